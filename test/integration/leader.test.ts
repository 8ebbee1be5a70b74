// Operator processes against one apiserver: of two, exactly one leads (holds
// the Lease and reconciles); kill -9 the leader and the other takes over. A
// leader that cannot renew its Lease for renewDeadline steps down and exits.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { API_VERSION } from '../../src/api/v1alpha1/mailcontinuity.js';
import { KubeClient, type KubeObject } from '../../src/operator/kube/client.js';
import { LEASES, MAILCONTINUITIES, SECRETS, STATEFULSETS } from '../../src/operator/kube/resources.js';
import { freePort, startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { waitFor } from '../harness/wait.js';
import { validSpec } from '../fixtures/mailcontinuity.js';

let cp: ControlPlane;
let client: KubeClient;
const operators: { proc: ChildProcess; port: number; identity: () => string | undefined; output: string[] }[] = [];

async function startOperator(extraArgs: string[] = []) {
  const port = await freePort();
  const output: string[] = [];
  // node itself (not npx), so that SIGKILL kills the operator and not a wrapper.
  const proc = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli.ts',
      'operator',
      `--kubeconfig=${cp.kubeconfig}`,
      `--metrics-bind-address=127.0.0.1:${port}`,
      '--lease-duration=4s',
      '--renew-deadline=3s',
      '--retry-period=500ms',
      '--log-level=info',
      ...extraArgs,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  proc.stdout!.on('data', (d: Buffer) => output.push(d.toString()));
  proc.stderr!.on('data', (d: Buffer) => output.push(d.toString()));
  const identity = () => output.join('').match(/"identity":"([^"]+)"/)?.[1];
  const op = { proc, port, identity, output };
  operators.push(op);
  await waitFor('operator waiting for the Lease', identity, 60_000);
  return op;
}

const leaderMetric = async (port: number) => {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(text.match(/^mail_continuity_operator_leader (\d+)/m)?.[1]);
};

async function createMc(name: string) {
  await client.create(MAILCONTINUITIES, {
    apiVersion: API_VERSION,
    kind: 'MailContinuity',
    metadata: { name, namespace: 'default' },
    spec: validSpec(),
  } as KubeObject);
}

beforeAll(async () => {
  cp = await startControlPlane();
  cp.kubectl(['apply', '--server-side', '-f', 'crds/']);
  client = KubeClient.fromFile(cp.kubeconfig);
  await client.create(SECRETS, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'gmail-sa', namespace: 'default' },
    data: { 'credentials.json': Buffer.from('{}').toString('base64') },
  });
}, 120_000);

afterAll(async () => {
  for (const op of operators) op.proc.kill('SIGKILL');
  await cp?.stop();
});

describe('leader election', () => {
  it('lets exactly one of two operators lead, and hands over when the leader is killed', async () => {
    const [a, b] = [await startOperator(), await startOperator()];
    const lease = await waitFor('a Lease holder', async () => {
      const l = await client.get<any>(LEASES, 'default', 'mail-continuity-operator').catch(() => undefined);
      return l?.spec?.holderIdentity ? l : undefined;
    });
    expect([a.identity(), b.identity()]).toContain(lease.spec.holderIdentity);
    const leader = [a, b].find((o) => o.identity() === lease.spec.holderIdentity)!;
    const standby = leader === a ? b : a;
    await waitFor('leader metric', async () => (await leaderMetric(leader.port)) === 1);
    expect(await leaderMetric(standby.port)).toBe(0);

    await createMc('first');
    await waitFor('first reconciled by the leader', () => client.get(STATEFULSETS, 'default', 'first-relay').catch(() => undefined));
    expect(standby.output.join('')).not.toContain('applying child');

    leader.proc.kill('SIGKILL');
    const taken = await waitFor(
      'the standby takes the Lease',
      async () => {
        const l = await client.get<any>(LEASES, 'default', 'mail-continuity-operator');
        return l.spec.holderIdentity === standby.identity() ? l : undefined;
      },
      30_000,
    );
    expect(taken.spec.leaseTransitions).toBeGreaterThanOrEqual(1);
    await createMc('second');
    await waitFor('second reconciled by the new leader', () => client.get(STATEFULSETS, 'default', 'second-relay').catch(() => undefined), 30_000);
    expect(standby.output.join('')).toContain('applying child');
  });

  it('steps down and exits once it could not renew the Lease for renewDeadline (3 s), not before', async () => {
    // A Lease of its own: this operator is the only candidate and leads at once.
    const op = await startOperator(['--leader-election-id=step-down']);
    const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
      op.proc.once('exit', (code) => resolve({ code, at: Date.now() })),
    );
    await waitFor('the Lease held by the operator', async () => {
      const l = await client.get<any>(LEASES, 'default', 'step-down').catch(() => undefined);
      return l?.spec?.holderIdentity === op.identity();
    });
    await waitFor('leader metric', async () => (await leaderMetric(op.port)) === 1);

    // Someone else takes the Lease for a minute: every renewal from now on fails.
    const lease = await client.get<any>(LEASES, 'default', 'step-down');
    const takenAt = Date.now();
    await client.replace(LEASES, {
      ...lease,
      spec: {
        ...lease.spec,
        holderIdentity: 'someone-else',
        leaseDurationSeconds: 60,
        renewTime: new Date(takenAt).toISOString().replace(/Z$/, '000Z'),
      },
    });
    // Its last good renewal was at most one retryPeriod (0.5 s) before the Lease was taken.
    const { code, at } = await Promise.race([
      exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the operator did not step down')), 20_000)),
    ]);
    expect(code).toBe(1);
    expect(at - takenAt).toBeGreaterThanOrEqual(3000 - 500);
    expect(op.output.join('')).toContain('lost the leader Lease: stepping down');
    expect((await client.get<any>(LEASES, 'default', 'step-down')).spec.holderIdentity).toBe('someone-else');
  });
});
