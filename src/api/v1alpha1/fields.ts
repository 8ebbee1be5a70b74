// The pieces of the MailContinuity schema several sections use: validation
// rules stated as CEL and as TypeScript side by side (withRules), durations,
// DNS and Secret names, Secret key references, ports, quantities, CIDRs.
import { z } from 'zod';
import { parseQuantity } from './formats.js';

/**
 * A validation rule stated twice, side by side: as CEL for the apiserver and as
 * a TypeScript check for the relay and the unit tests.
 */
export interface Rule<T> {
  rule: string;
  message: string;
  fieldPath?: string;
  reason?: 'FieldValueRequired' | 'FieldValueInvalid' | 'FieldValueForbidden';
  check: (value: T) => boolean;
}

export function withRules<S extends z.ZodType>(schema: S, rules: Rule<z.output<S>>[]): S {
  return schema
    .superRefine((value, ctx) => {
      for (const r of rules) {
        if (r.check(value as z.output<S>)) continue;
        const path = r.fieldPath ? r.fieldPath.slice(1).split('.') : [];
        ctx.addIssue({ code: 'custom', message: r.message, path });
      }
    })
    .meta({
      // Keeps what the schema already carried (x-kubernetes-int-or-string...).
      ...schema.meta(),
      'x-kubernetes-validations': [
        ...((schema.meta()?.['x-kubernetes-validations'] as object[] | undefined) ?? []),
        ...rules.map(({ check: _check, ...celRule }) => celRule),
      ],
    }) as S;
}

/** A Go-style duration as Kubernetes uses it: "90s", "15m", "120h", "1h30m". */
const durationPattern = /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/;
export const duration = (description: string) =>
  z.string().regex(durationPattern, 'must be a duration such as "90s", "15m" or "120h"').describe(description);

/** An RFC 1123 DNS name in lower case, each label at most 63 characters, e.g. "corp.example.com". */
export const dnsName = z
  .string()
  .min(1)
  .max(253)
  .regex(
    /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/,
    'must be a lower-case DNS name such as "corp.example.com", each label (between dots) at most 63 characters',
  );

/**
 * The name of a Kubernetes object such as a Secret or a StorageClass: an RFC
 * 1123 subdomain as the apiserver checks it (IsDNS1123Subdomain: lower-case
 * alphanumerics, '-' and '.', alphanumeric at both ends, at most 253).
 */
export const kubeName = (kind: string) =>
  z
    .string()
    .min(1)
    .max(253)
    .regex(
      /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
      `must be a ${kind} name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit (RFC 1123 subdomain)`,
    );

export const secretName = kubeName('Secret').describe('Name of a Secret in the namespace of the MailContinuity.');

/** A reference to one key of a Secret in the namespace of the MailContinuity. */
export const secretKeyRef = (description: string, defaultKey: string) =>
  z
    .object({
      name: secretName,
      key: z
        .string()
        .min(1)
        .max(253)
        .default(defaultKey)
        .describe(`Key in the Secret's data that holds the value (default "${defaultKey}").`),
    })
    .strict()
    .describe(description);

export const port = (description: string, def: number) =>
  z.number().int().min(1).max(65535).default(def).describe(description);

/**
 * The grammar of a Kubernetes resource quantity as apimachinery's
 * resource.Quantity defines it (its OpenAPI pattern), without the sign: a
 * negative quantity is never meant here. "250m", "1.5Gi", "1e3", "128974848".
 */
export const QUANTITY_PATTERN =
  '^\\+?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$';

/** A Kubernetes resource quantity: a string such as "500m" or "1Gi", or a whole number. */
export const quantity = z
  .union([
    z.string().max(64).regex(new RegExp(QUANTITY_PATTERN), 'must be a Kubernetes quantity such as "250m", "256Mi" or "1Gi"'),
    z.number().int().min(0),
  ])
  .meta({ 'x-kubernetes-int-or-string': true })
  .describe('A Kubernetes resource quantity, e.g. "250m", "256Mi" or 1.');

/** CEL: the quantity `x` (an int-or-string field) as a Kubernetes quantity. */
const celQuantity = (x: string) => `quantity(string(${x}))`;

/** A quantity above zero (a volume size), as CEL and as a TypeScript check. */
export const positiveQuantity = (description: string) =>
  withRules(quantity, [
    {
      rule: `!isQuantity(string(self)) || ${celQuantity('self')}.isGreaterThan(quantity('0'))`,
      check: (v) => !(parseQuantity(v) <= 0),
      message: 'must be more than zero, e.g. "10Gi"',
    },
  ]).describe(description);

const resourceList = (description: string) =>
  z.record(z.string().min(1).max(253), quantity).meta({ maxProperties: 16 }).optional().describe(description);

export const resourceRequirements = withRules(
  z
    .object({
      requests: resourceList('Minimum resources per relay pod, e.g. {cpu: 100m, memory: 128Mi}.'),
      limits: resourceList('Maximum resources per relay pod, e.g. {memory: 256Mi}.'),
    })
    .strict(),
  [
    {
      rule:
        '!has(self.requests) || !has(self.limits) || self.limits.all(k, !(k in self.requests) || ' +
        `!isQuantity(string(self.requests[k])) || !isQuantity(string(self.limits[k])) || ` +
        `${celQuantity('self.requests[k]')}.compareTo(${celQuantity('self.limits[k]')}) <= 0)`,
      check: (v) =>
        Object.entries(v.limits ?? {}).every(([k, limit]) => {
          const request = v.requests?.[k];
          return request === undefined || !(parseQuantity(request) > parseQuantity(limit));
        }),
      message:
        'a request exceeds the limit of the same resource (e.g. requests.memory 512Mi with limits.memory 256Mi): raise the limit or lower the request',
      fieldPath: '.requests',
    },
  ],
).describe('Compute resources of each relay container.');

export const cidr = z.string().min(3).max(43).describe('An IPv4 or IPv6 CIDR such as "203.0.113.0/24".');
