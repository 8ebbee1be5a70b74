// Names, labels and owner references shared by the builders.
import { createHash } from 'node:crypto';
import { API_VERSION, KIND, type MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import type { KubeObject, OwnerReference } from '../kube/types.js';

export const MANAGED_BY = 'mail-continuity-operator';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const LABEL_INSTANCE = 'mailcontinuity.io/name';
export const ANNOTATION_CONFIG_HASH = 'mailcontinuity.io/config-hash';

const relayBase = (mcName: string) => `${mcName}-relay`;

/** The relay StatefulSet of MailContinuity `mcName`. */
export const relayStatefulSetName = relayBase;

/** The relay Pod of `ordinal` (the StatefulSet names its Pods `<statefulSet>-<ordinal>`). */
export const relayPodName = (mcName: string, ordinal: number) => `${relayBase(mcName)}-${ordinal}`;

/** Names of the children of one MailContinuity. */
export function childNames(mc: MailContinuity) {
  const base = relayBase(mc.metadata.name);
  return {
    statefulSet: base,
    service: base,
    headlessService: `${base}-pods`,
    config: `${base}-config`,
    adminToken: `${base}-admin`,
    serviceAccount: base,
    pdb: base,
    networkPolicy: base,
  };
}

/** Labels every child carries; the selector labels are a stable subset. */
export function selectorLabels(mc: MailContinuity): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'mail-continuity-relay',
    'app.kubernetes.io/instance': mc.metadata.name,
  };
}

export function labels(mc: MailContinuity): Record<string, string> {
  return {
    ...selectorLabels(mc),
    'app.kubernetes.io/component': 'relay',
    'app.kubernetes.io/part-of': 'mail-continuity',
    [LABEL_MANAGED_BY]: MANAGED_BY,
    [LABEL_INSTANCE]: mc.metadata.name,
  };
}

export function ownerReference(mc: MailContinuity): OwnerReference {
  if (!mc.metadata.uid) throw new Error(`MailContinuity ${mc.metadata.name} has no uid`);
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: mc.metadata.name,
    uid: mc.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

export function metadata(mc: MailContinuity, name: string, extra: Partial<KubeObject['metadata']> = {}) {
  return {
    name,
    namespace: mc.metadata.namespace,
    labels: labels(mc),
    ownerReferences: [ownerReference(mc)],
    ...extra,
  };
}

export const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
