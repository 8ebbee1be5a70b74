// The decide phase of a reconcile: a pure function from what was gathered to
// what to do. No cache, no API: the inputs are written out here.
import { describe, expect, it } from '@jest/globals';
import { API_VERSION, MailContinuitySpec, type MailContinuity } from '../../src/api/v1alpha1/mailcontinuity.js';
import { buildChildren } from '../../src/operator/builders/index.js';
import { decide } from '../../src/operator/reconcile/decide.js';
import { childKey, type Live } from '../../src/operator/reconcile/gather.js';
import type { KubeObject } from '../../src/operator/kube/types.js';
import { liveOf } from '../fixtures/live.js';
import { validSpec } from '../fixtures/mailcontinuity.js';

const NOW = new Date('2026-12-03T10:00:00Z');
const opts = { defaultImage: 'example/mc:1', now: NOW };

function live(overrides: Partial<Live> = {}, status?: MailContinuity['status']): Live {
  const mc: MailContinuity = {
    apiVersion: API_VERSION,
    kind: 'MailContinuity',
    metadata: { name: 'corp', namespace: 'mail', uid: 'u1', generation: 2 },
    spec: MailContinuitySpec.parse(validSpec()),
    ...(status ? { status } : {}),
  };
  return liveOf(mc, overrides);
}

describe('decide', () => {
  it('applies every child that is missing, and only those that drifted once they exist', () => {
    const seen = live();
    expect(decide(seen, opts).apply.map((a) => `${a.reason} ${a.child.kind}/${a.child.metadata.name}`)).toEqual([
      'missing ServiceAccount/corp-relay',
      'missing NetworkPolicy/corp-relay',
      'missing Secret/corp-relay-admin',
      'missing ConfigMap/corp-relay-config',
      'missing Service/corp-relay-pods',
      'missing Service/corp-relay',
      'missing StatefulSet/corp-relay',
      'missing PodDisruptionBudget/corp-relay',
    ]);
    // The cluster holds them as applied, with fields the apiserver adds; someone edited the StatefulSet.
    const current = new Map<string, KubeObject>(
      buildChildren(seen.mc, { defaultImage: opts.defaultImage, adminToken: 'tok' }).map((c) => [
        childKey(c.kind, c.metadata.name),
        { ...c, metadata: { ...c.metadata, resourceVersion: '7' } },
      ]),
    );
    const sts = current.get('StatefulSet/corp-relay')!;
    current.set('StatefulSet/corp-relay', { ...sts, spec: { ...(sts.spec as object), podManagementPolicy: 'OrderedReady' } });
    expect(decide(live({ current }), opts).apply.map((a) => `${a.reason} ${a.child.kind}`)).toEqual([
      'drift StatefulSet',
    ]);
  });

  it('stalls on a missing Secret: nothing applied, one Event only when it was not stalled before', () => {
    const plan = decide(live({ secrets: new Map() }), opts);
    expect(plan.apply).toEqual([]);
    expect(plan.secretProblems).toEqual([{ field: 'spec.backup.gmail.serviceAccountSecretRef', name: 'gmail-sa' }]);
    expect(plan.stallEvent).toEqual({
      type: 'Warning',
      reason: 'SecretNotFound',
      message:
        'Secret mail/gmail-sa (spec.backup.gmail.serviceAccountSecretRef) not found: create it in namespace mail',
    });
    const stalled = { type: 'Stalled', status: 'True' as const, reason: 'SecretNotFound', message: '', lastTransitionTime: '2026-12-03T09:00:00Z' };
    expect(decide(live({ secrets: new Map() }, { conditions: [stalled] }), opts).stallEvent).toBeUndefined();
  });

  it('reports a primary not probed yet as Unknown, naming its target, and no PrimaryHealthy when probes are off', () => {
    const plan = decide(live(), opts);
    expect(plan.conditions.find((c) => c.type === 'PrimaryHealthy')).toMatchObject({
      status: 'Unknown',
      reason: 'AwaitingProbe',
      message: expect.stringContaining('exchange'),
    });
    expect(plan.conditions.map((c) => c.type)).toEqual(['PrimaryHealthy', 'FailoverActive', 'BackupReachable']);
    expect(decide(live({ probing: false }), opts).conditions.map((c) => c.type)).toEqual([
      'FailoverActive',
      'BackupReachable',
    ]);
  });

  it('puts the relays’ queue depths in status only once a relay answered', () => {
    expect(decide(live(), opts).relayQueues).toBeUndefined();
    const tally = {
      phase: 0,
      answered: 2,
      endpoints: 2,
      messagesToBackup: 0,
      messagesReplayed: 0,
      queuedPrimary: 12,
      queuedBackup: 3,
      replaying: false,
      backup: { up: 2, down: 0, unknown: 0 },
    };
    const plan = decide(live({ tally }), opts);
    expect(plan.relayQueues).toEqual({ queuedPrimary: 12, queuedBackup: 3 });
    expect(plan.conditions.find((c) => c.type === 'BackupReachable')).toMatchObject({ status: 'True' });
  });
});
