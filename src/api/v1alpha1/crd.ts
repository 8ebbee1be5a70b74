// Turns the zod schemas into the MailContinuity CustomResourceDefinition: a
// structural OpenAPI v3 schema (no $ref, no $schema, no additionalProperties
// beside properties), the status subresource, printer columns, short name and
// categories. `make generate` writes it to crds/; `make test` fails when the
// file there differs from what this produces.
import { z } from 'zod';
import {
  API_VERSION,
  CATEGORIES,
  GROUP,
  KIND,
  MailContinuitySpec,
  MailContinuityStatus,
  OBJECT_RULES,
  PLURAL,
  SHORT_NAMES,
  SINGULAR,
  VERSION,
} from './mailcontinuity.js';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const isObject = (v: Json | undefined): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Keys of JSON Schema 2020-12 that a structural schema may not carry. */
const DROP = new Set(['$schema', 'propertyNames', 'id', '$id']);

/**
 * Rewrites one JSON schema node (recursively) into structural OpenAPI v3:
 * - objects with properties lose `additionalProperties: false` (the apiserver
 *   prunes unknown fields instead);
 * - int-or-string quantities become `x-kubernetes-int-or-string: true` with
 *   `anyOf: [integer, string]`;
 * - zod's "any safe integer" bounds are dropped (they say nothing).
 */
export function toStructural(node: Json): Json {
  if (Array.isArray(node)) return node.map(toStructural);
  if (!isObject(node)) return node;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(node)) {
    if (DROP.has(key)) continue;
    if (key === 'additionalProperties' && value === false) continue;
    if (
      (key === 'minimum' && value === Number.MIN_SAFE_INTEGER) ||
      (key === 'maximum' && value === Number.MAX_SAFE_INTEGER)
    )
      continue;
    out[key] = key === 'default' || key === 'x-kubernetes-validations' ? value : toStructural(value);
  }
  if (isObject(out.default) && isObject(out.properties)) out.default = withNestedDefaults(out, out.default);
  if (out['x-kubernetes-int-or-string'] === true) {
    // The form the apiserver expects (and controller-gen writes) for quantities:
    // the branches' checks move up beside it (pattern and maxLength hold for a
    // string, minimum for a number).
    const branches = (Array.isArray(out.anyOf) ? out.anyOf : []).filter(isObject);
    const text = branches.find((b) => b.type === 'string');
    const whole = branches.find((b) => b.type === 'integer' || b.type === 'number');
    for (const [key, value] of [
      ['pattern', text?.pattern],
      ['maxLength', text?.maxLength],
      ['minimum', whole?.minimum],
    ] as const) {
      if (value !== undefined && out[key] === undefined) out[key] = value;
    }
    delete out.type;
    out.anyOf = [{ type: 'integer' }, { type: 'string' }];
  }
  if (out.$ref !== undefined || out.$defs !== undefined) {
    throw new Error(`schema still has a $ref after inlining: ${JSON.stringify(node).slice(0, 200)}`);
  }
  return out;
}

/**
 * An object default such as `{}` spelled out with the defaults of its fields,
 * as the apiserver would apply them: CEL rules of the object are checked
 * against the default value itself when the CRD is created.
 */
function withNestedDefaults(schema: JsonObject, value: JsonObject): JsonObject {
  const out: JsonObject = { ...value };
  const properties = isObject(schema.properties) ? schema.properties : {};
  for (const [name, prop] of Object.entries(properties)) {
    if (!isObject(prop)) continue;
    if (out[name] === undefined && prop.default !== undefined) out[name] = prop.default;
    const v = out[name];
    if (isObject(v) && isObject(prop.properties)) out[name] = withNestedDefaults(prop, v);
  }
  return out;
}

export function openApiSchema(schema: z.ZodType): JsonObject {
  const json = z.toJSONSchema(schema, { io: 'input', reused: 'inline', unrepresentable: 'throw' }) as Json;
  return toStructural(json) as JsonObject;
}

const conditionColumn = (name: string, type: string, description: string) => ({
  name,
  type: 'string',
  jsonPath: `.status.conditions[?(@.type=="${type}")].status`,
  description,
});

export function customResourceDefinition(): JsonObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${PLURAL}.${GROUP}`,
      labels: { 'app.kubernetes.io/name': 'mail-continuity-operator', 'app.kubernetes.io/part-of': 'mail-continuity' },
    },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: {
        kind: KIND,
        listKind: `${KIND}List`,
        plural: PLURAL,
        singular: SINGULAR,
        shortNames: SHORT_NAMES,
        categories: CATEGORIES,
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Mode', type: 'string', jsonPath: '.spec.mode', description: 'DualDelivery or FailoverOnly.' },
            conditionColumn('Primary', 'PrimaryHealthy', 'Whether the primary (Exchange) answers its health probes.'),
            conditionColumn('Failover', 'FailoverActive', 'Whether mail is flowing to Gmail because of a failover.'),
            conditionColumn('Ready', 'Ready', 'Whether the relay is reconciled and ready.'),
            {
              name: 'Status',
              type: 'string',
              priority: 1,
              jsonPath: '.status.conditions[?(@.type=="Ready")].message',
              description: 'Message of the Ready condition.',
            },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: `${KIND} (${API_VERSION}) runs an SMTP relay in front of Microsoft Exchange that keeps inbound mail flowing to Google Workspace while Exchange is down, then replays what Exchange missed.`,
              required: ['spec'],
              'x-kubernetes-validations': OBJECT_RULES.map(({ check: _check, ...celRule }) => celRule),
              properties: {
                apiVersion: { type: 'string', description: 'APIVersion of this object: mailcontinuity.io/v1alpha1.' },
                kind: { type: 'string', description: 'Kind of this object: MailContinuity.' },
                // Only the name is described (the apiserver allows no more): the root's rules name it.
                metadata: { type: 'object', properties: { name: { type: 'string' } } },
                spec: openApiSchema(MailContinuitySpec),
                status: openApiSchema(MailContinuityStatus),
              },
            },
          },
        },
      ],
    },
  };
}
