// The pieces of the MailContinuity schema several sections use: validation
// rules stated as CEL and as TypeScript side by side (withRules), durations,
// DNS and Secret names, Secret key references, ports, quantities, CIDRs.
import { z } from 'zod';

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
    .meta({ 'x-kubernetes-validations': rules.map(({ check: _check, ...celRule }) => celRule) }) as S;
}

/** A Go-style duration as Kubernetes uses it: "90s", "15m", "120h", "1h30m". */
const durationPattern = /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/;
export const duration = (description: string) =>
  z.string().regex(durationPattern, 'must be a duration such as "90s", "15m" or "120h"').describe(description);

/** An RFC 1123 DNS name in lower case, e.g. "corp.example.com". */
export const dnsName = z
  .string()
  .min(1)
  .max(253)
  .regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
    'must be a lower-case DNS name such as "corp.example.com"',
  );

export const secretName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a Secret name (RFC 1123 subdomain)')
  .describe('Name of a Secret in the namespace of the MailContinuity.');

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

/** A Kubernetes resource quantity: a string such as "500m" or "1Gi", or a number. */
export const quantity = z
  .union([z.string(), z.number()])
  .meta({ 'x-kubernetes-int-or-string': true })
  .describe('A Kubernetes resource quantity, e.g. "250m", "256Mi" or 1.');

export const resourceRequirements = z
  .object({
    requests: z
      .record(z.string(), quantity)
      .optional()
      .describe('Minimum resources per relay pod, e.g. {cpu: 100m, memory: 128Mi}.'),
    limits: z
      .record(z.string(), quantity)
      .optional()
      .describe('Maximum resources per relay pod, e.g. {memory: 256Mi}.'),
  })
  .strict()
  .describe('Compute resources of each relay container.');

export const cidr = z.string().min(3).max(43).describe('An IPv4 or IPv6 CIDR such as "203.0.113.0/24".');
