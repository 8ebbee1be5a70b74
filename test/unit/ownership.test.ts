// What the operator refuses to trust, decided purely: a child it does not own
// (ChildNotOwned), and the admin token of a Secret it does not own.
import { describe, expect, it } from '@jest/globals';
import { API_VERSION, type MailContinuity } from '../../src/api/v1alpha1/mailcontinuity.js';
import { Informer } from '../../src/operator/kube/informer.js';
import type { KubeObject } from '../../src/operator/kube/types.js';
import { decide } from '../../src/operator/reconcile/decide.js';
import { adminToken } from '../../src/operator/reconcile/gather.js';
import { controlledBy, notOwnedStall } from '../../src/operator/reconcile/ownership.js';
import { desiredConditions } from '../../src/operator/status.js';
import { liveOf } from '../fixtures/live.js';
import { parsedMailContinuity } from '../fixtures/mailcontinuity.js';

const NOW = new Date('2026-12-03T10:00:00Z');
const opts = { defaultImage: 'example/mc:1', now: NOW };

const mcOf = (status?: MailContinuity['status']) => parsedMailContinuity(undefined, status);

function secret(name: string, owner?: { uid: string; controller?: boolean }): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name,
      namespace: 'mail',
      ...(owner
        ? { ownerReferences: [{ apiVersion: API_VERSION, kind: 'MailContinuity', name: 'corp', controller: true, ...owner }] }
        : {}),
    },
    data: { token: Buffer.from('planted').toString('base64') },
  };
}

describe('children the operator does not own', () => {
  it('owns by controller ownerReference UID, not by name', () => {
    const mc = mcOf();
    expect(controlledBy(secret('corp-relay-admin', { uid: 'u1' }), mc)).toBe(true);
    expect(controlledBy(secret('corp-relay-admin', { uid: 'someone-else' }), mc)).toBe(false);
    expect(controlledBy(secret('corp-relay-admin', { uid: 'u1', controller: false }), mc)).toBe(false);
    expect(controlledBy(secret('corp-relay-admin'), mc)).toBe(false);
  });

  it('names each foreign object and the fix', () => {
    const stall = notOwnedStall(mcOf(), [secret('corp-relay-admin'), secret('x', { uid: 'u1' })]);
    expect(stall).toEqual({
      reason: 'ChildNotOwned',
      message:
        'Secret mail/corp-relay-admin already exists and is not owned by MailContinuity mail/corp: the operator adopts ' +
        'no object it did not create. Delete it (the operator then creates its own) or give the MailContinuity another name',
    });
    expect(notOwnedStall(mcOf(), [secret('x', { uid: 'u1' })])).toBeUndefined();
  });

  it('decide: a cached child that is not ours stalls the resource, nothing applied, one Event', () => {
    const current = new Map([['Secret/corp-relay-admin', secret('corp-relay-admin')]]);
    const plan = decide(liveOf(mcOf(), { current }), opts);
    expect(plan.apply).toEqual([]);
    expect(plan.stall?.reason).toBe('ChildNotOwned');
    expect(plan.stallEvent).toMatchObject({ type: 'Warning', reason: 'ChildNotOwned' });
    const already = mcOf({
      conditions: [{ type: 'Stalled', status: 'True', reason: 'ChildNotOwned', message: '', lastTransitionTime: '2026-12-03T09:00:00Z' }],
    });
    expect(decide(liveOf(already, { current }), opts).stallEvent).toBeUndefined();
    expect(desiredConditions({ mc: mcOf(), secretProblems: [], stall: plan.stall, now: NOW })).toEqual([
      { type: 'Stalled', status: 'True', reason: 'ChildNotOwned', message: plan.stall!.message },
      { type: 'Ready', status: 'False', reason: 'ChildNotOwned', message: plan.stall!.message },
    ]);
  });

  it('trusts the admin token only of the Secret it owns', () => {
    const cacheWith = (s: KubeObject) => ({ children: { Secret: { get: () => s } as unknown as Informer<KubeObject> } });
    expect(adminToken(cacheWith(secret('corp-relay-admin')), mcOf())).toBeUndefined();
    expect(adminToken(cacheWith(secret('corp-relay-admin', { uid: 'u1' })), mcOf())).toBe('planted');
  });
});
