// spec.relay.podTemplate: where and how the relay pods are scheduled, as named
// fields in the manner of CloudNativePG's cluster spec (not a raw
// PodTemplateSpec, whose containers, volumes and security context the operator
// owns): node selector, tolerations, affinity, priority class, image pull
// Secrets, extra labels and annotations, topology spread constraints.
import { z } from 'zod';
import { kubeName, withRules } from './fields.js';

/** A label or annotation key as Kubernetes checks it: an optional DNS-subdomain prefix and "/", then a name of at most 63. */
const KEY_PATTERN = '^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$';
const keyPattern = new RegExp(KEY_PATTERN);
const isKey = (k: string) => keyPattern.test(k) && (k.indexOf('/') < 0 || k.indexOf('/') <= 253);

/** A label value: empty, or at most 63 characters of alphanumerics, '-', '_' and '.', alphanumeric at both ends. */
const labelValue = z
  .string()
  .max(63)
  .regex(/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/, 'must be a label value: at most 63 letters, digits, "-", "_" or "."');

const labelKey = z.string().min(1).max(317).describe('A label key such as "app.kubernetes.io/name" or "tier".');

/** A map whose keys are label (or annotation) keys: checked by CEL, as a structural schema cannot name key patterns. */
const keyedMap = <V extends z.ZodType>(value: V, what: string, max: number) =>
  withRules(z.record(z.string().max(317), value).meta({ maxProperties: max }), [
    {
      rule: `self.all(k, k.matches('${KEY_PATTERN}'))`,
      check: (v) => Object.keys(v).every(isKey),
      message: `every ${what} key must be a Kubernetes label key: an optional DNS prefix and "/", then at most 63 letters, digits, "-", "_" or "."`,
    },
  ]);

const labelSelectorRequirement = z
  .object({
    key: labelKey,
    operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
    values: z.array(labelValue).max(64).optional(),
  })
  .strict();

const labelSelector = z
  .object({
    matchLabels: keyedMap(labelValue, 'matchLabels', 64).optional(),
    matchExpressions: z.array(labelSelectorRequirement).max(16).optional(),
  })
  .strict()
  .describe('A label query over pods, as in a Deployment selector.');

const nodeSelectorRequirement = z
  .object({
    key: labelKey,
    operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt']),
    values: z.array(z.string().max(63)).max(64).optional(),
  })
  .strict();

const nodeSelectorTerm = z
  .object({
    matchExpressions: z.array(nodeSelectorRequirement).max(16).optional(),
    matchFields: z.array(nodeSelectorRequirement).max(16).optional(),
  })
  .strict();

const nodeAffinity = z
  .object({
    requiredDuringSchedulingIgnoredDuringExecution: z
      .object({ nodeSelectorTerms: z.array(nodeSelectorTerm).min(1).max(16) })
      .strict()
      .optional(),
    preferredDuringSchedulingIgnoredDuringExecution: z
      .array(z.object({ weight: z.number().int().min(1).max(100), preference: nodeSelectorTerm }).strict())
      .max(16)
      .optional(),
  })
  .strict()
  .describe('Nodes the relay pods must or should run on (core/v1 NodeAffinity).');

const podAffinityTerm = z
  .object({
    labelSelector: labelSelector.optional(),
    namespaceSelector: labelSelector.optional(),
    namespaces: z.array(kubeName('Namespace')).max(64).optional(),
    topologyKey: labelKey,
    matchLabelKeys: z.array(labelKey).max(16).optional(),
    mismatchLabelKeys: z.array(labelKey).max(16).optional(),
  })
  .strict();

const podAffinity = (what: string) =>
  z
    .object({
      requiredDuringSchedulingIgnoredDuringExecution: z.array(podAffinityTerm).max(16).optional(),
      preferredDuringSchedulingIgnoredDuringExecution: z
        .array(z.object({ weight: z.number().int().min(1).max(100), podAffinityTerm }).strict())
        .max(16)
        .optional(),
    })
    .strict()
    .describe(what);

const affinity = z
  .object({
    nodeAffinity: nodeAffinity.optional(),
    podAffinity: podAffinity('Pods the relay pods must or should run beside (core/v1 PodAffinity).').optional(),
    podAntiAffinity: podAffinity(
      'Pods the relay pods must or should run apart from (core/v1 PodAntiAffinity). When affinity is omitted, the relay pods prefer nodes apart from each other.',
    ).optional(),
  })
  .strict()
  .describe('Scheduling constraints of the relay pods (core/v1 Affinity).');

const toleration = withRules(
  z
    .object({
      key: labelKey.optional().describe('Taint key; empty with operator Exists tolerates every taint.'),
      operator: z.enum(['Exists', 'Equal']).default('Equal'),
      value: labelValue.optional(),
      effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional().describe('Taint effect; empty matches all.'),
      tolerationSeconds: z
        .number()
        .int()
        .optional()
        .describe('With effect NoExecute: how long the pod stays on a node once the taint appears.'),
    })
    .strict(),
  [
    {
      rule: "self.operator != 'Exists' || !has(self.value) || self.value == ''",
      check: (v) => v.operator !== 'Exists' || !v.value,
      message: 'a toleration with operator Exists has no value',
      fieldPath: '.value',
    },
    {
      rule: "has(self.key) || self.operator == 'Exists'",
      check: (v) => v.key !== undefined || v.operator === 'Exists',
      message: 'a toleration without key must have operator Exists (it then tolerates every taint)',
      fieldPath: '.operator',
    },
    {
      rule: "!has(self.tolerationSeconds) || self.effect == 'NoExecute'",
      check: (v) => v.tolerationSeconds === undefined || v.effect === 'NoExecute',
      message: 'tolerationSeconds needs effect NoExecute',
      fieldPath: '.tolerationSeconds',
    },
  ],
).describe('A taint the relay pods tolerate (core/v1 Toleration).');

const topologySpreadConstraint = z
  .object({
    maxSkew: z.number().int().min(1).max(1000).describe('How unevenly the relay pods may be spread.'),
    topologyKey: labelKey.describe('Node label whose values are the domains, e.g. topology.kubernetes.io/zone.'),
    whenUnsatisfiable: z
      .enum(['DoNotSchedule', 'ScheduleAnyway'])
      .describe('DoNotSchedule keeps a pod pending rather than breaking the spread; ScheduleAnyway only prefers it.'),
    labelSelector: labelSelector
      .optional()
      .describe("The pods counted; default the relay pods of this MailContinuity (the StatefulSet's selector)."),
    minDomains: z.number().int().min(1).max(1000).optional(),
    nodeAffinityPolicy: z.enum(['Honor', 'Ignore']).optional(),
    nodeTaintsPolicy: z.enum(['Honor', 'Ignore']).optional(),
    matchLabelKeys: z.array(labelKey).max(16).optional(),
  })
  .strict()
  .describe('How the relay pods spread over a topology (core/v1 TopologySpreadConstraint).');

/** Labels the operator sets on the relay pods (their selector among them): podTemplate.labels may not set them. */
export const RESERVED_LABELS = [
  'app.kubernetes.io/name',
  'app.kubernetes.io/instance',
  'app.kubernetes.io/component',
  'app.kubernetes.io/part-of',
  'app.kubernetes.io/managed-by',
  'mailcontinuity.io/name',
];

const podLabels = withRules(keyedMap(labelValue, 'labels', 64), [
  {
    rule: `!self.exists(k, k in [${RESERVED_LABELS.map((l) => `'${l}'`).join(', ')}])`,
    check: (v) => !Object.keys(v).some((k) => RESERVED_LABELS.includes(k)),
    message: `labels may not set the labels the operator sets (${RESERVED_LABELS.join(', ')}): the StatefulSet selects its pods by them`,
  },
]);

const podAnnotations = withRules(keyedMap(z.string().max(65536), 'annotations', 64), [
  {
    rule: "!self.exists(k, k.startsWith('mailcontinuity.io/'))",
    check: (v) => !Object.keys(v).some((k) => k.startsWith('mailcontinuity.io/')),
    message: 'annotations may not use the mailcontinuity.io/ prefix: the operator sets those',
  },
]);

export const podTemplate = z
  .object({
    nodeSelector: keyedMap(labelValue, 'nodeSelector', 64)
      .optional()
      .describe('Node labels a node must have to run a relay pod, e.g. {node-role.corp.example.com/mail: ""}.'),
    tolerations: z.array(toleration).max(32).optional().describe('Taints the relay pods tolerate, e.g. of dedicated mail nodes.'),
    affinity: affinity.optional(),
    priorityClassName: kubeName('PriorityClass')
      .optional()
      .describe('PriorityClass of the relay pods, so that mail intake is not evicted first under pressure.'),
    imagePullSecrets: z
      .array(z.object({ name: kubeName('Secret') }).strict())
      .max(16)
      .optional()
      .describe('Secrets (kubernetes.io/dockerconfigjson) for pulling the relay image from a private registry.'),
    labels: podLabels
      .optional()
      .describe("Extra labels of the relay pods (not the operator's own, which select them)."),
    annotations: podAnnotations.optional().describe('Extra annotations of the relay pods.'),
    topologySpreadConstraints: z
      .array(topologySpreadConstraint)
      .max(8)
      .optional()
      .describe(
        'Replaces the default spread (maxSkew 1 over kubernetes.io/hostname and topology.kubernetes.io/zone, ScheduleAnyway), e.g. with DoNotSchedule to forbid two relays in one zone.',
      ),
  })
  .strict()
  .describe('Scheduling and metadata of the relay pods, in named fields (the operator owns the rest of the pod).');

export type PodTemplate = z.output<typeof podTemplate>;
