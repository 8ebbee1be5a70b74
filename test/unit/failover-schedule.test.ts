// Maintenance windows (spec.failover.schedule) and a status that tells the
// truth: the windows as a pure function of the time, the failover decision
// they feed (manual Active/Inactive win, no relay deployed: no failover), the
// Events at their start and end, and the schema's checks of a window.
import { describe, expect, it } from '@jest/globals';
import { API_VERSION, MailContinuitySpec, type MailContinuity } from '../../src/api/v1alpha1/mailcontinuity.js';
import { buildChildren } from '../../src/operator/builders/index.js';
import { decideFailover } from '../../src/operator/failover/decide.js';
import { planFailover, seedRecord } from '../../src/operator/failover/plan.js';
import { scheduleAt, scheduleStatus } from '../../src/operator/failover/schedule.js';
import { HealthTracker, primaryHealthyCondition, type HealthState } from '../../src/operator/health/hysteresis.js';
import { decide } from '../../src/operator/reconcile/decide.js';
import { childKey } from '../../src/operator/reconcile/gather.js';
import type { KubeObject } from '../../src/operator/kube/types.js';
import { liveOf } from '../fixtures/live.js';
import { validSpec } from '../fixtures/mailcontinuity.js';

const at = (iso: string) => new Date(iso);
const W1 = { start: '2026-12-05T22:00:00+01:00', end: '2026-12-05T23:30:00+01:00', description: 'Exchange CU14' };
const W2 = { start: '2026-12-12T21:00:00Z', end: '2026-12-12T22:00:00Z' };

function specWith(failover: Record<string, unknown>) {
  const s = validSpec() as unknown as Record<string, Record<string, unknown>>;
  return MailContinuitySpec.parse({ ...s, failover: { ...s.failover, ...failover } });
}

function health(healthy: boolean, now: Date, failureThreshold = 1): HealthState {
  const t = new HealthTracker({ failureThreshold, successThreshold: 1 });
  return t.observe(
    healthy ? { ok: true, latencyMs: 1 } : { ok: false, latencyMs: 1, reason: 'ConnectionRefused', message: 'refused' },
    now,
  );
}

describe('scheduleAt', () => {
  it('says which window is in progress, which comes next, and when that changes', () => {
    const before = scheduleAt([W2, W1], at('2026-12-05T20:00:00Z'));
    expect(before.active).toBeUndefined();
    expect(before.next).toEqual({ start: at('2026-12-05T21:00:00Z'), end: at('2026-12-05T22:30:00Z'), description: 'Exchange CU14' });
    expect(before.nextBoundaryMs).toBe(3_600_000);

    const during = scheduleAt([W2, W1], at('2026-12-05T21:00:00Z'));
    expect(during.active?.start).toEqual(at('2026-12-05T21:00:00Z'));
    expect(during.next?.start).toEqual(at('2026-12-12T21:00:00Z'));
    expect(during.nextBoundaryMs).toBe(90 * 60_000);
    expect(scheduleStatus(during)).toEqual({
      activeWindow: { start: '2026-12-05T21:00:00Z', end: '2026-12-05T22:30:00Z', description: 'Exchange CU14' },
      nextWindow: { start: '2026-12-12T21:00:00Z', end: '2026-12-12T22:00:00Z' },
    });

    // The end is exclusive; past windows are ignored; nothing ahead: no boundary.
    const after = scheduleAt([W1, W2], at('2026-12-12T22:00:00Z'));
    expect(after).toEqual({});
    expect(scheduleStatus(after)).toBeUndefined();
    expect(scheduleAt(undefined, at('2026-12-12T22:00:00Z'))).toEqual({});
  });

  it('joins windows that overlap or touch into one stretch (no end and restart between them)', () => {
    const a = { start: '2026-12-05T21:00:00Z', end: '2026-12-05T22:00:00Z' };
    const b = { start: '2026-12-05T22:00:00Z', end: '2026-12-05T23:00:00Z' };
    const s = scheduleAt([b, a], at('2026-12-05T21:30:00Z'));
    expect(s.active?.end).toEqual(at('2026-12-05T23:00:00Z'));
    expect(s.next).toBeUndefined();
    expect(s.nextBoundaryMs).toBe(90 * 60_000);
  });
});

describe('decideFailover with maintenance windows', () => {
  const spec = specWith({ schedule: [W1] });
  const inWindow = at('2026-12-05T21:10:00Z');

  it('fails over for the window (trigger Scheduled, the primary held), whatever the probes say', () => {
    const d = decideFailover(spec, health(true, inWindow), false, { now: inWindow });
    expect(d).toMatchObject({ active: true, trigger: 'Scheduled', holdPrimary: true });
    expect(d.condition).toMatchObject({ status: 'True', reason: 'MaintenanceWindow' });
    expect(d.condition.message).toContain('2026-12-05T21:00:00Z – 2026-12-05T22:30:00Z (Exchange CU14)');
    const outside = at('2026-12-05T22:30:00Z');
    expect(decideFailover(spec, health(true, outside), true, { now: outside })).toMatchObject({ active: false });
  });

  it('lets manual Active and Inactive win over a window', () => {
    const active = specWith({ schedule: [W1], manual: 'Active' });
    expect(decideFailover(active, undefined, false, { now: inWindow })).toMatchObject({ trigger: 'Manual' });
    expect(decideFailover(active, undefined, false, { now: inWindow }).holdPrimary).toBeUndefined();
    const inactive = specWith({ schedule: [W1], manual: 'Inactive' });
    expect(decideFailover(inactive, undefined, false, { now: inWindow })).toMatchObject({
      active: false,
      condition: { reason: 'ManualInactive' },
    });
  });

  it('never fails over without a relay deployed to carry it, not even for a window or manual Active', () => {
    for (const s of [spec, specWith({ manual: 'Active' })]) {
      expect(decideFailover(s, health(false, inWindow), false, { now: inWindow, relaysDeployed: false })).toEqual({
        active: false,
        condition: expect.objectContaining({ status: 'False', reason: 'NoRelayDeployed' }),
      });
    }
  });

  it('does not say "never probed" of a primary whose probes fail below the threshold, and agrees with PrimaryHealthy', () => {
    const h = health(false, inWindow, 3);
    expect(h.healthy).toBeUndefined();
    const d = decideFailover(specWith({}), h, false, { now: inWindow });
    expect(d).toMatchObject({ active: false, condition: { reason: 'PrimaryHealthUnknown' } });
    expect(d.condition.message).toContain('fewer than failureThreshold (3)');
    expect(primaryHealthyCondition(h).message).toContain('fails its health probes');
    const never = decideFailover(specWith({}), new HealthTracker({ failureThreshold: 3, successThreshold: 1 }).current, false, {
      now: inWindow,
    });
    expect(never.condition.reason).toBe('AwaitingProbe');
  });
});

describe('planFailover over a window', () => {
  it('records FailoverStarted (Scheduled) at its start and FailoverEnded naming the window at its end', () => {
    const spec = specWith({ schedule: [W1] });
    const start = at('2026-12-05T21:00:00Z');
    const p1 = planFailover(seedRecord(undefined), spec, health(true, start), undefined, start);
    expect(p1.next).toMatchObject({ active: true, holdPrimary: true, lastFailover: { trigger: 'Scheduled', start: '2026-12-05T21:00:00Z' } });
    expect(p1.events).toEqual([
      expect.objectContaining({ type: 'Warning', reason: 'FailoverStarted', message: expect.stringContaining('Scheduled failover: maintenance window') }),
    ]);
    const end = at('2026-12-05T22:30:00Z');
    const p2 = planFailover(p1.next, spec, health(true, end), undefined, end);
    expect(p2.next).toMatchObject({ active: false, replaying: true, lastFailover: { end: '2026-12-05T22:30:00Z' } });
    expect(p2.next.holdPrimary).toBeUndefined();
    expect(p2.events).toEqual([
      expect.objectContaining({ reason: 'FailoverEnded', message: expect.stringMatching(/^the maintenance window is over: failover ended/) }),
    ]);
  });

  it('goes on as an automatic failover when the primary is down at the window’s end, no longer holding it', () => {
    const spec = specWith({ schedule: [W1] });
    const start = at('2026-12-05T21:00:00Z');
    const p1 = planFailover(seedRecord(undefined), spec, health(true, start), undefined, start);
    const end = at('2026-12-05T22:30:00Z');
    const p2 = planFailover(p1.next, spec, health(false, end), undefined, end);
    expect(p2.events).toEqual([]);
    expect(p2.next).toMatchObject({ active: true, phase: p1.next.phase });
    expect(p2.next.holdPrimary).toBeUndefined();
    expect(p2.decision.condition.reason).toBe('PrimaryUnhealthy');
  });
});

describe('decide: one story across conditions and Events', () => {
  const NOW = at('2026-12-05T21:10:00Z');
  const mcOf = (spec: MailContinuitySpec): MailContinuity => ({
    apiVersion: API_VERSION,
    kind: 'MailContinuity',
    metadata: { name: 'corp', namespace: 'mail', uid: 'u1', generation: 2 },
    spec,
  });

  it('a Stalled resource without relays records no FailoverStarted and shows FailoverActive=False, even with the primary down', () => {
    const mc = mcOf(specWith({ manual: 'Active' }));
    const plan = decide(liveOf(mc, { secrets: new Map(), health: health(false, NOW) }), { defaultImage: 'example/mc:1', now: NOW });
    expect(plan.secretProblems).not.toEqual([]);
    expect(plan.failoverEvents).toEqual([]);
    expect(plan.failover.active).toBe(false);
    expect(plan.conditions.find((c) => c.type === 'FailoverActive')).toMatchObject({ status: 'False', reason: 'NoRelayDeployed' });
  });

  it('fails over once the relay StatefulSet exists, puts the windows in status and requeues at the next boundary', () => {
    const mc = mcOf(specWith({ schedule: [W1, W2] }));
    const sts = buildChildren(mc, { defaultImage: 'example/mc:1', adminToken: 'tok' }).find((c) => c.kind === 'StatefulSet')!;
    const current = new Map<string, KubeObject>([[childKey('StatefulSet', sts.metadata.name), sts]]);
    const plan = decide(liveOf(mc, { current, health: health(true, NOW) }), { defaultImage: 'example/mc:1', now: NOW });
    expect(plan.failover).toMatchObject({ active: true, holdPrimary: true });
    expect(plan.failoverEvents.map((e) => e.reason)).toEqual(['FailoverStarted']);
    expect(plan.schedule).toMatchObject({ activeWindow: { end: '2026-12-05T22:30:00Z' }, nextWindow: { start: '2026-12-12T21:00:00Z' } });
    expect(plan.requeueAfterMs).toBe(3_600_000); // 80 min ahead: looked at again within the hour
    const late = decide(liveOf(mc, { current, health: health(true, NOW) }), { defaultImage: 'example/mc:1', now: at('2026-12-05T22:29:00Z') });
    expect(late.requeueAfterMs).toBe(60_000 + 50);
  });
});

describe('spec.failover.schedule validation', () => {
  const errors = (schedule: unknown[]) => {
    const r = MailContinuitySpec.safeParse({ ...validSpec(), failover: { ...(validSpec() as { failover: object }).failover, schedule } });
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('takes RFC 3339 windows with a zone, end after start, at most 168h', () => {
    expect(errors([W1, W2])).toEqual([]);
    expect(errors([{ start: W2.end, end: W2.start }])).toEqual(['failover.schedule.0.end: end must be after start']);
    expect(errors([{ start: '2026-12-01T00:00:00Z', end: '2026-12-08T00:00:01Z' }])).toEqual([
      'failover.schedule.0.end: a maintenance window lasts at most 168h (7 days); for longer, set manual: Active',
    ]);
    expect(errors([{ start: '2026-12-05 21:00', end: W2.end }])[0]).toMatch(/^failover\.schedule\.0\.start: must be an RFC 3339 time with a zone/);
  });
});

describe('statusPatch', () => {
  it('sets the windows that are over to null (a merge patch keeps what it does not name)', async () => {
    const { statusPatch } = await import('../../src/operator/status.js');
    const w = { start: '2026-12-05T21:00:00Z', end: '2026-12-05T22:00:00Z' };
    expect(statusPatch({ schedule: { nextWindow: w } }, { schedule: { activeWindow: w } })).toEqual({
      schedule: { activeWindow: w, nextWindow: null },
    });
    expect(statusPatch({ schedule: { activeWindow: w } }, {})).toEqual({ schedule: null });
    expect(statusPatch({}, { observedGeneration: 1 })).toEqual({ observedGeneration: 1 });
  });
});
