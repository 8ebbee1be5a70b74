// `make demo`'s scenario, short, asserting its final table: examples/demo.yaml
// on the whole stack through an Exchange outage and back.
import { afterAll, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { DEMO_USER, EXPECTED_DEMO_TABLE, formatTable, runTimeline } from '../harness/demo-timeline.js';
import { startStack, type Stack } from '../harness/stack.js';

let stack: Stack | undefined;
afterAll(async () => {
  await stack?.stop();
}, 60_000);

it('the demo timeline ends with every message at Exchange once, the outage mail at Gmail, the confidential one excluded', async () => {
  const manifest = YAML.parse(readFileSync('examples/demo.yaml', 'utf8')) as {
    metadata: { name: string };
    spec: Record<string, unknown>;
  };
  stack = await startStack({
    name: manifest.metadata.name,
    namespace: 'mail',
    spec: manifest.spec,
    domains: ['corp.example.com'],
    gmailUsers: [DEMO_USER],
  });
  const lines: string[] = [];
  const table = await runTimeline(
    stack,
    (l) => lines.push(l),
    (l) => lines.push(l),
  );
  expect({ ...table, phases: undefined }).toEqual({ ...EXPECTED_DEMO_TABLE, phases: undefined });
  expect(table.phases.map((p) => p.name)).toHaveLength(5);
  expect(lines.join('\n')).toMatch(/FailoverActive=True/);
  console.log(formatTable(table));
}, 300_000);
