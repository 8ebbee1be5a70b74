// spec.relay.podTemplate -> the scheduling fields and extra metadata of the
// relay pods (pure). The operator's own labels and annotations win over the
// user's (the schema already refuses them), a topology spread constraint
// without a labelSelector counts this MailContinuity's relay pods, and without
// affinity the relay pods prefer distinct nodes.
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

/**
 * Without spec.relay.podTemplate.affinity: relay pods prefer nodes apart from
 * each other (a node lost takes one relay and its spool, not all of them), as
 * kube-score asks of a StatefulSet; preferred, so a one-node cluster still runs them all.
 */
function defaultAffinity(mc: MailContinuity): Record<string, unknown> {
  return {
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [
        {
          weight: 100,
          podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: selectorLabels(mc) } },
        },
      ],
    },
  };
}

/** The pod spec fields podTemplate sets (only those given), the default affinity and spread otherwise. */
export function placement(mc: MailContinuity): Record<string, unknown> {
  const t = mc.spec.relay.podTemplate ?? {};
  const spread = t.topologySpreadConstraints?.map((c) => ({
    ...c,
    labelSelector: c.labelSelector ?? { matchLabels: selectorLabels(mc) },
  }));
  return {
    ...(t.nodeSelector ? { nodeSelector: t.nodeSelector } : {}),
    ...(t.tolerations ? { tolerations: t.tolerations } : {}),
    affinity: t.affinity ?? defaultAffinity(mc),
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
