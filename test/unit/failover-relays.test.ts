// Which Pods the operator treats as relays (and so sends the admin token to):
// only those the MailContinuity's own StatefulSet controls, by UID.
import { describe, expect, it } from '@jest/globals';
import { relayEndpoints } from '../../src/operator/failover/relays.js';
import type { KubeObject } from '../../src/operator/kube/types.js';

const STS_UID = 'b3c1f1a2-0000-4000-8000-000000000001';
const labels = { 'app.kubernetes.io/managed-by': 'mail-continuity-operator', 'mailcontinuity.io/name': 'corp' };

const statefulSet = (owner = { kind: 'MailContinuity', name: 'corp' }): KubeObject => ({
  apiVersion: 'apps/v1',
  kind: 'StatefulSet',
  metadata: {
    name: 'corp-relay',
    namespace: 'mail',
    uid: STS_UID,
    ownerReferences: [{ apiVersion: 'mailcontinuity.io/v1alpha1', ...owner, uid: 'mc-uid', controller: true }],
  },
});

function pod(name: string, ip: string, ownerUid: string | undefined, extra: Partial<KubeObject['metadata']> = {}): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'mail',
      labels,
      ...(ownerUid
        ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'corp-relay', uid: ownerUid, controller: true }] }
        : {}),
      ...extra,
    },
    status: { phase: 'Running', podIP: ip },
  };
}

describe('relayEndpoints', () => {
  it('keeps the Pods the StatefulSet controls, by its UID, and drops look-alikes', () => {
    const pods = [
      pod('corp-relay-1', '10.0.0.11', STS_UID),
      pod('corp-relay-0', 'fd00::10', STS_UID),
      pod('impostor', '10.0.0.66', undefined),
      pod('corp-relay-9', '10.0.0.67', 'another-uid'),
    ];
    expect(relayEndpoints(pods, statefulSet(), 'corp')).toEqual([
      { pod: 'corp-relay-0', url: 'http://[fd00::10]:8080' },
      { pod: 'corp-relay-1', url: 'http://10.0.0.11:8080' },
    ]);
  });

  it('drops an owned Pod that is not Running, has no IP, is being deleted or lacks the labels', () => {
    const notRunning = { ...pod('corp-relay-0', '10.0.0.10', STS_UID), status: { phase: 'Pending', podIP: '10.0.0.10' } };
    const noIp = { ...pod('corp-relay-1', '', STS_UID) };
    const deleting = pod('corp-relay-2', '10.0.0.12', STS_UID, { deletionTimestamp: '2026-01-01T00:00:00Z' });
    const unlabelled = pod('corp-relay-3', '10.0.0.13', STS_UID, { labels: {} });
    expect(relayEndpoints([notRunning, noIp, deleting, unlabelled], statefulSet(), 'corp')).toEqual([]);
  });

  it('finds no relay without the StatefulSet, or when the MailContinuity does not control it', () => {
    const pods = [pod('corp-relay-0', '10.0.0.10', STS_UID)];
    expect(relayEndpoints(pods, undefined, 'corp')).toEqual([]);
    expect(relayEndpoints(pods, statefulSet({ kind: 'MailContinuity', name: 'other' }), 'corp')).toEqual([]);
    expect(relayEndpoints(pods, statefulSet({ kind: 'Deployment', name: 'corp' }), 'corp')).toEqual([]);
  });
});
