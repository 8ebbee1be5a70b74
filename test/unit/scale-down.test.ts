// Scaling the relays down: the pure decision (reconcile/scale-down.ts) per
// case — a relay that does not answer, one that still holds mail, empty ones,
// a scale back up — and what decide() then applies and reports.
import { describe, expect, it } from '@jest/globals';
import { API_VERSION, MailContinuitySpec, type MailContinuity } from '../../src/api/v1alpha1/mailcontinuity.js';
import { buildChildren, configHash, configMap } from '../../src/operator/builders/index.js';
import { decide } from '../../src/operator/reconcile/decide.js';
import { childKey, type Live } from '../../src/operator/reconcile/gather.js';
import { decideScale, judgeRelay, type RelayReport, type ScaleInputs } from '../../src/operator/reconcile/scale-down.js';
import { desiredConditions } from '../../src/operator/status.js';
import type { KubeObject } from '../../src/operator/kube/types.js';
import { liveOf } from '../fixtures/live.js';
import { validSpec } from '../fixtures/mailcontinuity.js';

const empty = (pod: string, extra: Partial<RelayReport> = {}): RelayReport => ({
  pod,
  answered: true,
  draining: true,
  queuedPrimary: 0,
  queuedBackup: 0,
  smtpSessions: 0,
  ...extra,
});

const inputs = (over: Partial<ScaleInputs> = {}): ScaleInputs => ({
  name: 'corp',
  desired: 1,
  current: 2,
  reports: [empty('corp-relay-0', { draining: undefined }), empty('corp-relay-1')],
  prev: undefined,
  statusDraining: false,
  ...over,
});

describe('judgeRelay', () => {
  it('says why a relay is not drained, and counts one that does not answer as not drained', () => {
    expect(judgeRelay('corp-relay-1', undefined)).toEqual({ drained: false, says: 'corp-relay-1 does not answer (its spool cannot be checked)' });
    expect(judgeRelay('corp-relay-1', { pod: 'corp-relay-1', answered: false }).drained).toBe(false);
    expect(judgeRelay('corp-relay-1', empty('corp-relay-1', { draining: undefined })).says).toBe('corp-relay-1 has not confirmed the drain');
    expect(judgeRelay('corp-relay-1', empty('corp-relay-1', { queuedPrimary: 12 })).says).toBe('corp-relay-1 holds 12 messages (waiting for the primary)');
    expect(judgeRelay('corp-relay-1', empty('corp-relay-1', { queuedBackup: 3 })).says).toBe('corp-relay-1 holds 3 messages (waiting for Gmail)');
    expect(judgeRelay('corp-relay-1', empty('corp-relay-1', { queuedPrimary: 12, queuedBackup: 3 })).says).toBe(
      'corp-relay-1 holds messages waiting for the primary (12) and for Gmail (3)',
    );
    expect(judgeRelay('corp-relay-1', empty('corp-relay-1', { smtpSessions: 2 })).says).toBe('corp-relay-1 is empty but still has 2 SMTP sessions open');
    expect(judgeRelay('corp-relay-1', empty('corp-relay-1'))).toEqual({ drained: true, says: 'corp-relay-1 is empty' });
  });
});

describe('decideScale', () => {
  it('keeps the replicas and drains the removed relay while it holds mail, saying so', () => {
    const plan = decideScale(inputs({ reports: [empty('corp-relay-0'), empty('corp-relay-1', { queuedPrimary: 12 })] }));
    expect(plan.replicas).toBe(2);
    expect(plan.drain).toEqual(['corp-relay-1']);
    expect(plan.next).toEqual({ from: 2, to: 1, done: false });
    expect(plan.draining?.message).toBe(
      'scaling relays 2 -> 1: corp-relay-1 holds 12 messages (waiting for the primary); draining relays accept no new mail and are removed once empty',
    );
    expect(plan.events).toEqual([
      {
        type: 'Normal',
        reason: 'RelayDrainStarted',
        message: 'scaling relays 2 -> 1: draining corp-relay-1 (no new mail; delivering what they hold) before their pods are removed',
      },
    ]);
    // The next reconcile goes on without a second start.
    const again = decideScale(inputs({ prev: plan.next, reports: [empty('corp-relay-0'), empty('corp-relay-1', { queuedBackup: 1 })] }));
    expect(again.events).toEqual([]);
    expect(again.replicas).toBe(2);
  });

  it('does not remove a relay that does not answer, nor one that never answered (fail safe)', () => {
    for (const reports of [undefined, [empty('corp-relay-0')], [empty('corp-relay-0'), { pod: 'corp-relay-1', answered: false }]]) {
      const plan = decideScale(inputs({ reports }));
      expect(plan.replicas).toBe(2);
      expect(plan.draining?.message).toContain('corp-relay-1 does not answer (its spool cannot be checked)');
    }
  });

  it('lowers the replicas once every removed relay is empty, with the Event, and only once', () => {
    const prev = { from: 3, to: 1, done: false };
    const plan = decideScale(inputs({ current: 3, prev, reports: [empty('corp-relay-0'), empty('corp-relay-1'), empty('corp-relay-2')] }));
    expect(plan.replicas).toBe(1);
    expect(plan.drain).toEqual(['corp-relay-1', 'corp-relay-2']);
    expect(plan.draining).toBeUndefined();
    expect(plan.events).toEqual([
      { type: 'Normal', reason: 'RelayDrainCompleted', message: 'corp-relay-1, corp-relay-2 drained (nothing queued): scaling relays 3 -> 1' },
    ]);
    // The cache still shows 3 replicas: no second Event, the lower count stays.
    const stale = decideScale(inputs({ current: 3, prev: plan.next, reports: [empty('corp-relay-0'), empty('corp-relay-1'), empty('corp-relay-2')] }));
    expect(stale).toMatchObject({ replicas: 1, events: [] });
    // The cache caught up: nothing left to do; a pod still answering above keeps draining.
    const done = decideScale(inputs({ current: 1, prev: plan.next, reports: [empty('corp-relay-0'), empty('corp-relay-2')] }));
    expect(done).toMatchObject({ replicas: 1, drain: ['corp-relay-2'], next: undefined, events: [] });
  });

  it('starts and completes in one go when the removed relay is already empty', () => {
    const plan = decideScale(inputs());
    expect(plan.replicas).toBe(1);
    expect(plan.events.map((e) => e.reason)).toEqual(['RelayDrainStarted', 'RelayDrainCompleted']);
  });

  it('cancels the drain when the spec is raised again: the relays kept take mail again', () => {
    const plan = decideScale(inputs({ desired: 2, prev: { from: 2, to: 1, done: false } }));
    expect(plan).toMatchObject({ replicas: 2, drain: [], next: undefined });
    expect(plan.events).toEqual([
      {
        type: 'Normal',
        reason: 'RelayDrainCancelled',
        message: 'scale-down 2 -> 1 cancelled: spec.relay.replicas is 2; the relays kept take mail again',
      },
    ]);
    // Scaling up beyond: the new replicas, no drain, no Event without a drain under way.
    expect(decideScale(inputs({ desired: 3 }))).toMatchObject({ replicas: 3, drain: [], events: [] });
  });

  it('after an operator restart, goes on from the stored condition without a second start', () => {
    const plan = decideScale(inputs({ statusDraining: true, reports: [empty('corp-relay-0'), empty('corp-relay-1', { queuedPrimary: 1 })] }));
    expect(plan.events).toEqual([]);
    expect(plan.replicas).toBe(2);
  });

  it('applies the spec when there is no StatefulSet yet', () => {
    expect(decideScale(inputs({ current: undefined, reports: undefined }))).toMatchObject({ replicas: 1, drain: [], events: [] });
  });
});

describe('decide with a scale-down', () => {
  function live(reports: RelayReport[] | undefined): Live {
    const raw = validSpec();
    (raw as { relay: { replicas?: number } }).relay.replicas = 1;
    const mc: MailContinuity = {
      apiVersion: API_VERSION,
      kind: 'MailContinuity',
      metadata: { name: 'corp', namespace: 'mail', uid: 'u1', generation: 3 },
      spec: MailContinuitySpec.parse(raw),
    };
    // What the cluster holds: the children as applied, the StatefulSet still at 2 replicas.
    const current = new Map<string, KubeObject>(
      buildChildren(mc, { defaultImage: 'example/mc:1', adminToken: 'tok', relayReplicas: 2 }).map((c) => [childKey(c.kind, c.metadata.name), c]),
    );
    return liveOf(mc, { current, probing: false, relays: reports });
  }
  const opts = { defaultImage: 'example/mc:1', now: new Date('2026-12-03T10:00:00Z') };

  it('applies nothing while the removed relay holds mail, and the status says DrainingRelays', () => {
    const plan = decide(live([empty('corp-relay-0'), empty('corp-relay-1', { queuedPrimary: 12 })]), opts);
    expect(plan.apply).toEqual([]);
    const conditions = desiredConditions({
      mc: live(undefined).mc,
      secretProblems: [],
      statefulSet: { replicas: 2, readyReplicas: 1, updatedReplicas: 2 },
      draining: plan.scale.draining,
      now: opts.now,
    });
    expect(conditions).toEqual([
      { type: 'Reconciling', status: 'True', reason: 'DrainingRelays', message: plan.scale.draining!.message },
      { type: 'Ready', status: 'False', reason: 'DrainingRelays', message: plan.scale.draining!.message },
    ]);
  });

  it('applies the StatefulSet with the lower count once the relay is empty', () => {
    const plan = decide(live([empty('corp-relay-0'), empty('corp-relay-1')]), opts);
    expect(plan.apply.map((a) => [a.child.kind, (a.child.spec as { replicas?: number }).replicas])).toEqual([['StatefulSet', 1]]);
  });
});

describe('the relay config', () => {
  it('does not change with spec.relay.replicas, so scaling rolls no relay', () => {
    const of = (replicas: number) => {
      const raw = validSpec();
      (raw as { relay: { replicas?: number } }).relay.replicas = replicas;
      const mc = { apiVersion: API_VERSION, kind: 'MailContinuity', metadata: { name: 'corp', namespace: 'mail', uid: 'u1' }, spec: MailContinuitySpec.parse(raw) } as MailContinuity;
      return configHash(configMap(mc));
    };
    expect(of(1)).toBe(of(3));
  });
});
