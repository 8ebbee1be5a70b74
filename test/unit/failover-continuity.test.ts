// The failover decision and phase (pure), and the continuity sync loop
// against the relay's real admin endpoint (its HTTP server with a real
// FailoverState) on loopback, driven the way the reconcile drives it.
import { afterEach, describe, expect, it } from '@jest/globals';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { MailContinuitySpec, type MailContinuity } from '../../src/api/v1alpha1/mailcontinuity.js';
import { Continuity } from '../../src/operator/failover/continuity.js';
import { decideFailover } from '../../src/operator/failover/decide.js';
import { planFailover, seedRecord, type PlannedEvent } from '../../src/operator/failover/plan.js';
import { StaticDirectory } from '../../src/operator/failover/relays.js';
import { HealthTracker, type HealthState } from '../../src/operator/health/hysteresis.js';
import { Drain } from '../../src/relay/control/drain.js';
import { FailoverState, type DeliveryFacts } from '../../src/relay/control/failover-state.js';
import { httpPort, startHttp } from '../../src/relay/control/http.js';
import { MailboxPacing } from '../../src/relay/transports/gmail/pacing.js';
import { validSpec } from '../fixtures/mailcontinuity.js';
import { waitUntil } from '../harness/wait.js';

const log = pino({ level: 'silent' });
const TOKEN = 'test-admin-token';
const KEY = 'mail/corp';

/** An RFC 3339 time without fractions, at or after `fromMs` (to the second) and not in the future. */
function expectRecent(time: string | undefined, fromMs: number) {
  expect(time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const t = Date.parse(time!);
  expect(t).toBeGreaterThanOrEqual(Math.floor(fromMs / 1000) * 1000);
  expect(t).toBeLessThanOrEqual(Date.now());
}

function health(healthy: boolean | undefined): HealthState {
  const t = new HealthTracker({ failureThreshold: 1, successThreshold: 1 });
  if (healthy === undefined) return t.current;
  return t.observe(
    healthy ? { ok: true, latencyMs: 1 } : { ok: false, latencyMs: 1, reason: 'ConnectionRefused', message: 'refused' },
    new Date(),
  );
}

function mc(
  mutate: (s: ReturnType<typeof validSpec>) => void = () => {},
  status?: MailContinuity['status'],
): MailContinuity {
  const raw = validSpec();
  mutate(raw);
  return {
    apiVersion: 'mailcontinuity.io/v1alpha1',
    kind: 'MailContinuity',
    metadata: { name: 'corp', namespace: 'mail', uid: 'u1', generation: 1 },
    spec: MailContinuitySpec.parse(raw),
    ...(status ? { status } : {}),
  } as MailContinuity;
}

describe('decideFailover', () => {
  const auto = mc().spec;
  it('Auto follows the health verdict, and Unknown keeps the previous verdict', () => {
    expect(decideFailover(auto, health(false), false)).toMatchObject({
      active: true,
      trigger: 'Automatic',
      condition: { status: 'True', reason: 'PrimaryUnhealthy' },
    });
    expect(decideFailover(auto, health(true), true)).toMatchObject({
      active: false,
      condition: { status: 'False', reason: 'PrimaryHealthy' },
    });
    expect(decideFailover(auto, health(undefined), true)).toMatchObject({
      active: true,
      condition: { reason: 'AwaitingProbe' },
    });
    expect(decideFailover(auto, undefined, false)).toMatchObject({
      active: false,
      condition: { reason: 'AwaitingProbe' },
    });
  });
  it('manual Active fails over with a healthy primary; manual Inactive never fails over', () => {
    const active = mc((s) => (s.failover = { ...s.failover, manual: 'Active' })).spec;
    const inactive = mc((s) => (s.failover = { ...s.failover, manual: 'Inactive' })).spec;
    expect(decideFailover(active, health(true), false)).toMatchObject({
      active: true,
      trigger: 'Manual',
      condition: { reason: 'ManualFailover' },
    });
    const d = decideFailover(inactive, health(false), true);
    expect(d).toMatchObject({ active: false, condition: { status: 'False', reason: 'ManualInactive' } });
    expect(d.condition.message).toContain('primary is unhealthy');
  });
});

describe('Continuity with real relay admin endpoints', () => {
  const servers: Server[] = [];
  const managers: Continuity[] = [];
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.stopAll()));
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  /** The numbers a relay's scheduler publishes, set by hand here (a fresh relay starts at 0). */
  const noFacts = (): DeliveryFacts => ({ messagesToBackup: 0, messagesReplayed: 0, replaying: false, queuedPrimary: 0, queuedBackup: 0, backup: 'unknown' });

  async function relay(quota?: MailboxPacing): Promise<{ url: string; state: FailoverState; facts: DeliveryFacts; drain: Drain }> {
    const state = new FailoverState({ active: false, replayMaxMessagesPerSecond: 20 });
    const facts = noFacts();
    const drain = new Drain({ queued: () => facts.queuedPrimary + facts.queuedBackup, sessions: () => 0, log });
    const server = await startHttp('127.0.0.1', 0, {
      registry: new Registry(),
      failover: state,
      facts: () => facts,
      drain,
      ...(quota ? { mailboxQuota: { get: () => quota.unitsPerMinute, set: (n: number) => quota.setUnitsPerMinute(n) } } : {}),
      adminToken: TOKEN,
      ready: () => ({ ready: true }),
      log,
    });
    servers.push(server);
    return { url: `http://127.0.0.1:${httpPort(server)}`, state, facts, drain };
  }

  /**
   * A sync loop over the relays at urls, and the failover phase of a reconcile
   * as the reconciler runs it: on every call to reconcile(), and again whenever
   * the loop reports new relay numbers (onChange enqueues the resource).
   */
  function manager(urls: string[], token = TOKEN) {
    const events: PlannedEvent[] = [];
    const errors = { n: 0 };
    let last: { res: MailContinuity; health: HealthState | undefined } | undefined;
    const reconcile = (res: MailContinuity, h: HealthState | undefined) => {
      last = { res, health: h };
      const plan = planFailover(m.record(KEY) ?? seedRecord(res.status), res.spec, h, m.tally(KEY), new Date());
      m.set(res, plan.next);
      events.push(...plan.events);
      return plan;
    };
    const m: Continuity = new Continuity({
      onPushError: () => errors.n++,
      directory: new StaticDirectory([`mail/corp=${urls.join(',')}`]),
      token: () => token,
      log,
      onChange: () => last && reconcile(last.res, last.health),
      activeSyncMs: 50,
      idleSyncMs: 200,
    });
    managers.push(m);
    return { m, events, errors, reconcile };
  }

  it('tells every relay at once, splits the replay rate, counts Gmail copies and the replay, and ends with ReplayCompleted', async () => {
    const a = await relay();
    const b = await relay();
    const { m, events, reconcile } = manager([a.url, b.url]);
    const res = mc((s) => (s.recovery = { maxMessagesPerSecond: 15 }));

    reconcile(res, health(true));
    expect(m.state(KEY)).toMatchObject({ active: false });

    const start = Date.now();
    const out = reconcile(res, health(false));
    expect(out.decision.active).toBe(true);
    expect(out.next.lastFailover).toMatchObject({ trigger: 'Automatic', messagesToBackup: 0 });
    expectRecent(out.next.lastFailover?.start, start);
    await waitUntil('both relays active', 5000, () => a.state.isActive && b.state.isActive);
    const propagation = Date.now() - start;
    expect(propagation).toBeLessThan(2000);
    expect(a.state.replayRate).toBe(8); // ceil(15 / 2)
    expect(events).toEqual([expect.objectContaining({ type: 'Warning', reason: 'FailoverStarted' })]);

    // The relays send mail to Gmail: the sum reaches the record (and so status).
    a.facts.messagesToBackup += 2;
    b.facts.messagesToBackup += 1;
    await waitUntil('3 copies counted', 5000, () => m.state(KEY)?.lastFailover?.messagesToBackup === 3);

    // The primary is back: relays replay; 4 messages still wait for it on relay a.
    Object.assign(a.facts, { replaying: true, queuedPrimary: 4, backup: 'up', auditFailing: true });
    const endedAt = Date.now();
    const ended = reconcile(res, health(true));
    expect(ended.decision.active).toBe(false);
    expectRecent(ended.next.lastFailover?.end, endedAt);
    await waitUntil('relays inactive', 5000, () => !a.state.isActive && !b.state.isActive);
    await waitUntil('remaining 4', 5000, () => m.state(KEY)?.lastFailover?.replayRemaining === 4);
    expect(m.tally(KEY)).toMatchObject({ queuedPrimary: 4, backup: { up: 1, unknown: 1, down: 0 }, auditFailing: 1 });
    expect(m.state(KEY)?.replaying).toBe(true);
    Object.assign(a.facts, { messagesReplayed: 4, queuedPrimary: 0, replaying: false });
    await waitUntil('replay completed', 5000, () => m.state(KEY)?.replaying === false);
    expect(m.state(KEY)?.lastFailover).toMatchObject({
      messagesToBackup: 3,
      messagesReplayed: 4,
      replayRemaining: 0,
    });
    expect(events.map((e) => e.reason)).toEqual(['FailoverStarted', 'FailoverEnded', 'ReplayCompleted']);
    expect(events[1]!.message).toContain('3 messages went to Gmail');
  });

  it('re-asserts the state on a relay that restarted (lost its state) and keeps the count going', async () => {
    const a = await relay();
    const { m, reconcile } = manager([a.url]);
    reconcile(mc(), health(false));
    await waitUntil('relay active', 5000, () => a.state.isActive);
    a.facts.messagesToBackup = 2;
    await waitUntil('2 counted', 5000, () => m.state(KEY)?.lastFailover?.messagesToBackup === 2);
    // The relay process restarts: same address, a fresh state (inactive, counts at 0).
    await new Promise((r) => servers.shift()!.close(r));
    const fresh = new FailoverState({ active: false, replayMaxMessagesPerSecond: 20 });
    const freshFacts = noFacts();
    servers.push(
      await startHttp('127.0.0.1', Number(new URL(a.url).port), {
        registry: new Registry(),
        failover: fresh,
        facts: () => freshFacts,
        drain: new Drain({ queued: () => 0, sessions: () => 0, log }),
        adminToken: TOKEN,
        ready: () => ({ ready: true }),
        log,
      }),
    );
    await waitUntil('restarted relay told again', 5000, () => fresh.isActive);
    freshFacts.messagesToBackup = 1;
    await waitUntil('count carried over', 5000, () => m.state(KEY)?.lastFailover?.messagesToBackup === 3);
  });

  it('a wrong token is refused by the relay: the state does not change, and the manager keeps trying', async () => {
    const a = await relay();
    const { reconcile, errors } = manager([a.url], 'not-the-token');
    reconcile(mc(), health(false));
    await waitUntil('three refused syncs', 5000, () => errors.n >= 3);
    expect(a.state.isActive).toBe(false);
  });

  it('takes over the state written in status by a previous operator (no new FailoverStarted)', async () => {
    const a = await relay();
    const { m, events, reconcile } = manager([a.url]);
    const res = mc(undefined, {
      conditions: [
        {
          type: 'FailoverActive',
          status: 'True',
          reason: 'PrimaryUnhealthy',
          message: '',
          lastTransitionTime: '2026-01-01T00:00:00Z',
        },
      ],
      lastFailover: { start: '2026-01-01T00:00:00Z', trigger: 'Automatic', messagesToBackup: 7 },
    });
    const out = reconcile(res, undefined); // not probed yet after the restart
    expect(out.next.lastFailover?.messagesToBackup).toBe(7);
    expect(out.decision.active).toBe(true);
    await waitUntil('relay told', 5000, () => a.state.isActive);
    // The relay kept its count across the operator's restart (7 so far), then makes one more copy.
    a.facts.messagesToBackup = 8;
    await waitUntil('count 8, not 7 + 8', 5000, () => m.state(KEY)?.lastFailover?.messagesToBackup === 8);
    // Two more syncs (activeSyncMs 50) must not add the count again.
    await new Promise((r) => setTimeout(r, 200));
    expect(m.state(KEY)?.lastFailover?.messagesToBackup).toBe(8);
    expect(events).toEqual([]);
  });

  it('tells only the relays in the drain set to drain, keeps each answer by Pod, and takes a relay out of the drain', async () => {
    const [a, b] = [await relay(), await relay()];
    const { m, reconcile } = manager([a.url, b.url]);
    reconcile(mc(), health(true));
    b.facts.queuedPrimary = 4;
    m.drain(KEY, ['corp-relay-1'], { from: 2, to: 1, done: false });
    await waitUntil('corp-relay-1 drains', 5000, () => b.drain.draining);
    expect(a.drain.draining).toBe(false);
    await waitUntil('answers by Pod', 5000, () => m.relays(KEY)?.find((r) => r.pod === 'corp-relay-1')?.queuedPrimary === 4);
    expect(m.relays(KEY)).toEqual([
      { pod: 'corp-relay-0', answered: true, draining: false, queuedPrimary: 0, queuedBackup: 0, smtpSessions: 0 },
      { pod: 'corp-relay-1', answered: true, draining: true, queuedPrimary: 4, queuedBackup: 0, smtpSessions: 0 },
    ]);
    expect(m.scaleDown(KEY)).toEqual({ from: 2, to: 1, done: false });
    // Cancelled: the relay that said it drains is told to take mail again.
    m.drain(KEY, [], undefined);
    await waitUntil('corp-relay-1 takes mail again', 5000, () => !b.drain.draining);
  });

  it('a relay older than the quota share (which refuses the field) still gets the failover state', async () => {
    // The relay of the previous version: the same admin endpoint, whose strict update schema lacks the field.
    const told: unknown[] = [];
    const old = createServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => {
        const body = JSON.parse(text) as Record<string, unknown>;
        if ('gmailUnitsPerMinute' in body) {
          res.writeHead(400, { 'content-type': 'application/json' });
          return res.end(JSON.stringify({ error: '(body): Unrecognized key: "gmailUnitsPerMinute"' }));
        }
        told.push(body);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ active: body.active, since: null, replayMaxMessagesPerSecond: 1, ...noFacts() }));
      });
    });
    await new Promise<void>((r) => old.listen(0, '127.0.0.1', () => r()));
    servers.push(old);
    const { reconcile, errors } = manager([`http://127.0.0.1:${(old.address() as AddressInfo).port}`]);
    reconcile(mc((s) => (s.failover = { ...s.failover, manual: 'Active' })), health(true));
    await waitUntil('the old relay told active', 5000, () => told.some((b) => (b as { active: boolean }).active));
    expect(errors.n).toBe(0);
  });

  it("splits each Gmail mailbox's quota across the relays, as the replay rate, and follows the number of replicas", async () => {
    const pacing = [0, 1, 2].map(() => new MailboxPacing({ now: Date.now }));
    const [a, b, c] = [await relay(pacing[0]), await relay(pacing[1]), await relay(pacing[2])];
    const units = () => pacing.map((p) => p.unitsPerMinute);
    // Two relays of spec.relay.replicas 2: half of the 13,500 units each.
    const two = manager([a.url, b.url]);
    two.reconcile(mc((s) => Object.assign(s.relay, { replicas: 2 })), health(true));
    await waitUntil('6,750 units each', 5000, () => units()[0] === 6750 && units()[1] === 6750);
    // Scaled up to 3 before the third Pod answers: a third each already.
    two.reconcile(mc((s) => Object.assign(s.relay, { replicas: 3 })), health(true));
    await waitUntil('4,500 units each', 5000, () => units()[0] === 4500 && units()[1] === 4500);
    await two.m.stopAll();
    // Scaled down to 1 while three relays still answer (two draining, delivering their spool): a third each.
    const three = manager([a.url, b.url, c.url]);
    three.reconcile(mc((s) => Object.assign(s.relay, { replicas: 1 })), health(true));
    await waitUntil('4,500 units each of three', 5000, () => units().every((u) => u === 4500));
    // Once one relay is left: the whole budget.
    await three.m.stopAll();
    const one = manager([a.url]);
    one.reconcile(mc((s) => Object.assign(s.relay, { replicas: 1 })), health(true));
    await waitUntil('13,500 units', 5000, () => units()[0] === 13_500);
  });
});
