// spec.relay.podTemplate -> the scheduling fields and extra metadata of the
// relay pods (pure). The operator's own labels and annotations win over the
// user's (the schema already refuses them), and a topology spread constraint
// without a labelSelector counts this MailContinuity's relay pods.
import type { MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import { selectorLabels } from './common.js';

/** Without spec.relay.podTemplate.topologySpreadConstraints: one relay per node and zone where the cluster allows. */
function defaultSpread(mc: MailContinuity): Record<string, unknown>[] {
  return ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'].map((topologyKey) => ({
    maxSkew: 1,
    topologyKey,
    whenUnsatisfiable: 'ScheduleAnyway',
    labelSelector: { matchLabels: selectorLabels(mc) },
  }));
}

/** The pod spec fields podTemplate sets: only those given, so an empty podTemplate changes nothing. */
export function placement(mc: MailContinuity): Record<string, unknown> {
  const t = mc.spec.relay.podTemplate ?? {};
  const spread = t.topologySpreadConstraints?.map((c) => ({
    ...c,
    labelSelector: c.labelSelector ?? { matchLabels: selectorLabels(mc) },
  }));
  return {
    ...(t.nodeSelector ? { nodeSelector: t.nodeSelector } : {}),
    ...(t.tolerations ? { tolerations: t.tolerations } : {}),
    ...(t.affinity ? { affinity: t.affinity } : {}),
    ...(t.priorityClassName ? { priorityClassName: t.priorityClassName } : {}),
    ...(t.imagePullSecrets ? { imagePullSecrets: t.imagePullSecrets } : {}),
    topologySpreadConstraints: spread ?? defaultSpread(mc),
  };
}

/** The relay pods' labels: podTemplate.labels, then the operator's (the selector among them). */
export const podLabels = (mc: MailContinuity, own: Record<string, string>): Record<string, string> => ({
  ...mc.spec.relay.podTemplate?.labels,
  ...own,
});

/** The relay pods' annotations: podTemplate.annotations, then the operator's. */
export const podAnnotations = (mc: MailContinuity, own: Record<string, string>): Record<string, string> => ({
  ...mc.spec.relay.podTemplate?.annotations,
  ...own,
});
