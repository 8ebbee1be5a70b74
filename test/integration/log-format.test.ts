// `operator --log-format text` end to end on a real control plane: the operator process (the
// real CLI) logs text lines, and the relay StatefulSet it renders runs the relay with the same
// --log-format; with json (the default) the relay's arguments are as they always were.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { KubeClient, type KubeObject } from '../../src/operator/kube/client.js';
import { MAILCONTINUITIES, SECRETS, STATEFULSETS } from '../../src/operator/kube/resources.js';
import { createMailContinuity } from '../fixtures/mailcontinuity.js';
import { startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { stopProcess } from '../harness/process.js';
import { waitFor } from '../harness/wait.js';

let cp: ControlPlane;
let client: KubeClient;
const NS = 'default';

type Sts = KubeObject & { spec: { template: { spec: { containers: { name: string; args: string[] }[] } } } };

/** The operator as a process, its stdout kept line by line. */
function startOperator(format?: 'text' | 'json'): { proc: ChildProcess; lines: string[] } {
  const args = ['--import', 'tsx', 'src/cli.ts', 'operator', `--kubeconfig=${cp.kubeconfig}`, '--leader-elect=false'];
  args.push('--metrics-bind-address=0', '--relay-image=example/mail-continuity:test', ...(format ? ['--log-format', format] : []));
  const proc = spawn(process.execPath, args, { env: { ...process.env, NODE_NO_WARNINGS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let rest = '';
  proc.stdout!.on('data', (d: Buffer) => {
    const parts = (rest + d.toString()).split('\n');
    rest = parts.pop()!;
    lines.push(...parts);
  });
  proc.stderr!.on('data', (d: Buffer) => lines.push(`stderr: ${d}`));
  return { proc, lines };
}

async function relayArgs(name: string, op?: { proc: ChildProcess; lines: string[] }): Promise<string[]> {
  const sts = await waitFor(
    `StatefulSet ${name}-relay`,
    () => {
      if (op && op.proc.exitCode !== null) throw new Error(`the operator exited ${op.proc.exitCode}: ${op.lines.slice(-20).join('\n')}`);
      return client.get<Sts>(STATEFULSETS, NS, `${name}-relay`);
    },
    // The operator starts through tsx: on a loaded machine its first start alone has taken minutes.
    240_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\noperator output:\n${op?.lines.slice(-30).join('\n')}`);
  });
  return sts.spec.template.spec.containers.find((c) => c.name === 'relay')!.args;
}

beforeAll(async () => {
  cp = await startControlPlane();
  cp.kubectl(['apply', '--server-side', '-f', 'crds/']);
  client = KubeClient.fromFile(cp.kubeconfig);
  await waitFor('CRD served', async () => (await client.list(MAILCONTINUITIES, NS)).items !== undefined, 30_000);
  await client.create(SECRETS, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'gmail-sa', namespace: NS },
    data: { 'credentials.json': Buffer.from('{"type":"service_account"}').toString('base64') },
  });
}, 180_000);

afterAll(async () => {
  await cp?.stop();
});

describe('operator --log-format on a real apiserver', () => {
  it('text: the operator logs text lines and its relays get --log-format text', async () => {
    const op = startOperator('text');
    try {
      await createMailContinuity(client, NS, 'texty');
      expect(await relayArgs('texty', op)).toEqual(['relay', '--config', '/etc/mail-continuity/config/relay.yaml', '--log-format', 'text']);
      await waitFor('an operator log line', () => op.lines.length > 0, 60_000);
      for (const l of op.lines) expect(l).toMatch(/^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO |WARN |ERROR) \S| {4})/);
    } finally {
      await stopProcess(op.proc, 20_000);
    }
  });

  it('json (the default): JSON lines, and the relay StatefulSet goes back to the plain arguments', async () => {
    const op = startOperator();
    try {
      await createMailContinuity(client, NS, 'plain');
      expect(await relayArgs('plain', op)).toEqual(['relay', '--config', '/etc/mail-continuity/config/relay.yaml']);
      // The resource rendered by the text operator is rendered again by this one: its relays follow.
      await waitFor('texty relays back to json', async () => !(await relayArgs('texty')).includes('--log-format'), 120_000);
      await waitFor('an operator log line', () => op.lines.length > 0, 60_000);
      for (const l of op.lines) expect(JSON.parse(l)).toMatchObject({ level: expect.any(Number), component: 'operator' });
    } finally {
      await stopProcess(op.proc, 20_000);
    }
  });
});
