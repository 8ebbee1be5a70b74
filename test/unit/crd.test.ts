import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { customResourceDefinition } from '../../src/api/v1alpha1/crd.js';
import { QUANTITY_PATTERN } from '../../src/api/v1alpha1/fields.js';
import { CRD_FILE, renderCrdYaml } from '../../src/generate.js';

type Node = Record<string, unknown>;
const versions = () => (customResourceDefinition().spec as Node).versions as Node[];
const schema = () => (versions()[0]!.schema as Node).openAPIV3Schema as Node;

/** Every schema node with its JSON path, for structural checks. */
function* walk(node: unknown, path = '$'): Generator<[string, Node]> {
  if (typeof node !== 'object' || node === null || Array.isArray(node)) return;
  const n = node as Node;
  yield [path, n];
  for (const [k, v] of Object.entries((n.properties as Node) ?? {})) yield* walk(v, `${path}.${k}`);
  if (n.items) yield* walk(n.items, `${path}[]`);
  if (typeof n.additionalProperties === 'object') yield* walk(n.additionalProperties, `${path}{}`);
}

describe('generated CRD', () => {
  it('is what crds/ holds (run `make generate` when this fails)', () => {
    expect(readFileSync(`crds/${CRD_FILE}`, 'utf8')).toBe(renderCrdYaml());
  });

  it('is structural: every node typed, no $ref/$schema, no additionalProperties beside properties', () => {
    for (const [path, node] of walk(schema())) {
      expect([path, node.$ref, node.$schema, node.$defs]).toEqual([path, undefined, undefined, undefined]);
      if (node.properties) expect([path, node.additionalProperties]).toEqual([path, undefined]);
      if (node['x-kubernetes-int-or-string']) {
        expect(node.anyOf).toEqual([{ type: 'integer' }, { type: 'string' }]);
      } else if (path !== '$.metadata') {
        expect([path, typeof node.type]).toEqual([path, 'string']);
      }
    }
  });

  it('holds every quantity to the Kubernetes quantity grammar, and the name to what its children allow', () => {
    const quantities = [...walk(schema())].filter(([, n]) => n['x-kubernetes-int-or-string']);
    expect(quantities.map(([p]) => p)).toEqual(
      expect.arrayContaining(['$.spec.relay.resources.requests{}', '$.spec.relay.persistence.size']),
    );
    for (const [path, node] of quantities) {
      expect([path, node.pattern, node.minimum]).toEqual([path, QUANTITY_PATTERN, 0]);
      expect(new RegExp(node.pattern as string).test('-1Gi')).toBe(false);
    }
    const rules = schema()['x-kubernetes-validations'] as Node[];
    expect(rules.map((r) => r.fieldPath)).toEqual(['.metadata.name', '.metadata.name']);
  });

  it('spells out nested defaults of object defaults, so CEL rules hold on them', () => {
    const health = (((schema().properties as Node).spec as Node).properties as Node).primary as Node;
    const def = ((health.properties as Node).health as Node).default as Node;
    expect(def).toMatchObject({ periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 3, successThreshold: 2 });
  });

  it('has the status subresource, short name, categories and printer columns', () => {
    const crd = customResourceDefinition();
    const spec = crd.spec as Node;
    expect(spec.names).toMatchObject({ kind: 'MailContinuity', shortNames: ['mc'], categories: ['mail', 'all'] });
    expect(versions()[0]!.subresources).toEqual({ status: {} });
    const columns = (versions()[0]!.additionalPrinterColumns as Node[]).map((c) => c.name);
    expect(columns).toEqual(['Mode', 'Primary', 'Failover', 'Ready', 'Status', 'Age']);
  });
});
