// deploy/install.yaml the way users apply it (kubectl, server-side), on a real
// kube-apiserver with RBAC on; then the operator runs with the token of the
// ServiceAccount the manifest creates, so the test proves the RBAC is enough
// for a full reconcile (children, status, Events, the leader Lease), and
// `kubectl auth can-i` proves it is not more than that.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { binDir, freePort, startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { waitFor } from '../harness/wait.js';
import { validSpec } from '../fixtures/mailcontinuity.js';

const NS = 'mail-continuity-system';
const SA = 'mail-continuity-operator';
const USER = `system:serviceaccount:${NS}:${SA}`;
const CRD_NAME = 'mailcontinuities.mailcontinuity.io';
const APP_NS = 'mail';

let cp: ControlPlane;
let operator: ChildProcess | undefined;
let operatorLog = '';

const get = (args: string[]) => JSON.parse(cp.kubectl(['get', ...args, '-o', 'json']));
const docs = () =>
  YAML.parseAllDocuments(readFileSync('deploy/install.yaml', 'utf8'))
    .map((d) => d.toJS())
    .filter(Boolean) as any[];

/** `kubectl auth can-i VERB RESOURCE ... --as the operator`: true for "yes". */
function canI(...args: string[]): boolean {
  const res = spawnSync(
    join(binDir(), 'kubectl'),
    [`--kubeconfig=${cp.kubeconfig}`, 'auth', 'can-i', ...args, `--as=${USER}`],
    {
      encoding: 'utf8',
    },
  );
  if (res.stdout.trim() !== 'yes' && res.stdout.trim() !== 'no')
    throw new Error(`can-i ${args.join(' ')}: ${res.stderr}`);
  return res.stdout.trim() === 'yes';
}

beforeAll(async () => {
  cp = await startControlPlane();
}, 120_000);

afterAll(async () => {
  if (operator && operator.exitCode === null) {
    const exited = new Promise((r) => operator!.once('exit', r));
    operator.kill('SIGTERM');
    await exited;
  }
  await cp?.stop();
});

describe('deploy/install.yaml', () => {
  it('is the chart rendered for mail-continuity-system: Namespace (restricted), CRD = crds/, 2 leader-elected replicas', () => {
    const objs = docs();
    const ns = objs.find((o) => o.kind === 'Namespace');
    expect(ns.metadata.name).toBe(NS);
    expect(ns.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
    const crd = objs.find((o) => o.kind === 'CustomResourceDefinition');
    expect(crd).toEqual(YAML.parse(readFileSync('crds/mailcontinuity.io_mailcontinuities.yaml', 'utf8')));
    const deploy = objs.find((o) => o.kind === 'Deployment');
    expect(deploy.metadata).toMatchObject({ name: SA, namespace: NS });
    expect(deploy.spec.replicas).toBe(2);
    expect(deploy.spec.template.spec.containers[0].args).toContain('--leader-elect=true');
    for (const o of objs.filter(
      (o) => !['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind),
    )) {
      expect(`${o.kind} ${o.metadata.namespace}`).toBe(`${o.kind} ${NS}`);
    }
  });

  it('kubectl apply --server-side -f crds/ installs an Established CRD', async () => {
    expect(cp.kubectl(['apply', '--server-side', '-f', 'crds/'])).toContain(`${CRD_NAME} serverside-applied`);
    await waitFor('CRD Established', () =>
      get(['crd', CRD_NAME]).status?.conditions?.some((c: any) => c.type === 'Established' && c.status === 'True'),
    );
  });

  it('passes a server-side dry run (every object validated by the apiserver), which creates nothing', () => {
    cp.kubectl(['create', 'namespace', NS]); // a dry run does not create the Namespace its objects need
    const out = cp.kubectl(['apply', '--dry-run=server', '-f', 'deploy/install.yaml']);
    expect(out).toContain(`deployment.apps/${SA} created (server dry run)`);
    expect(out).toContain(`clusterrole.rbac.authorization.k8s.io/${SA} created (server dry run)`);
    expect(cp.kubectl(['get', 'deployments', '-n', NS, '-o', 'name'])).toBe('');
  });

  it('kubectl apply --server-side -f deploy/install.yaml creates every object', () => {
    const out = cp.kubectl(['apply', '--server-side', '-f', 'deploy/install.yaml']);
    const applied = out.trim().split('\n');
    expect(applied.length).toBe(docs().length);
    expect(applied.every((l) => l.endsWith('serverside-applied'))).toBe(true);
    expect(get(['deployment', '-n', NS, SA]).spec.replicas).toBe(2);
    expect(get(['serviceaccount', '-n', NS, SA]).metadata.name).toBe(SA);
    // Applying it again changes nothing and conflicts with nothing.
    expect(cp.kubectl(['apply', '--server-side', '-f', 'deploy/install.yaml'])).not.toContain('conflict');
  });

  it('the operator, as its ServiceAccount, reconciles a MailContinuity: children, status, Events, Lease', async () => {
    const token = cp.kubectl(['create', 'token', SA, '-n', NS, '--duration=1h']).trim();
    const admin = YAML.parse(readFileSync(cp.kubeconfig, 'utf8'));
    const kubeconfig = join(cp.dir, 'operator.kubeconfig');
    writeFileSync(
      kubeconfig,
      YAML.stringify({
        ...admin,
        users: [{ name: 'admin', user: { token } }],
      }),
    );
    const port = await freePort();
    operator = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli.ts',
        'operator',
        `--kubeconfig=${kubeconfig}`,
        `--leader-election-namespace=${NS}`,
        `--leader-election-id=${SA}`,
        `--metrics-bind-address=127.0.0.1:${port}`,
        '--log-level=debug',
      ],
      { env: { ...process.env, POD_NAME: 'operator-under-test' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    operator.stdout!.on('data', (d: Buffer) => (operatorLog += d));
    operator.stderr!.on('data', (d: Buffer) => (operatorLog += d));

    cp.kubectl(['create', 'namespace', APP_NS]);
    cp.kubectl(['create', 'secret', 'generic', 'gmail-sa', '-n', APP_NS, '--from-literal=credentials.json={}']);
    const mc = (name: string, spec: unknown) =>
      JSON.stringify({
        apiVersion: 'mailcontinuity.io/v1alpha1',
        kind: 'MailContinuity',
        metadata: { name, namespace: APP_NS },
        spec,
      });
    cp.kubectl(['apply', '-f', '-'], mc('corp', validSpec()));
    const stalledSpec = validSpec();
    stalledSpec.backup.gmail.serviceAccountSecretRef = { name: 'no-such-secret' };
    cp.kubectl(['apply', '-f', '-'], mc('stalled', stalledSpec));

    const lease = await waitFor('the leader Lease', () => {
      const l = get(['lease', '-n', NS, SA]);
      return l.spec?.holderIdentity?.startsWith('operator-under-test_') && l;
    });
    expect(lease.spec.leaseDurationSeconds).toBe(15);
    // Children through server-side apply (create + patch), each kind once.
    await waitFor(
      'relay children',
      () => {
        const names = cp.kubectl([
          'get',
          'statefulset,service,configmap,secret,serviceaccount,pdb,networkpolicy',
          '-n',
          APP_NS,
          '-o',
          'name',
        ]);
        return [
          'statefulset.apps/corp-relay',
          'configmap/corp-relay-config',
          'secret/corp-relay-admin',
          'serviceaccount/corp-relay',
          'poddisruptionbudget.policy/corp-relay',
          'networkpolicy.networking.k8s.io/corp-relay',
          'service/corp-relay',
        ].every((n) => names.includes(n));
      },
      60_000,
    );
    // Status through the status subresource.
    const status = await waitFor('status of corp', () => {
      const s = get(['mc', '-n', APP_NS, 'corp']).status;
      return s?.observedGeneration === 1 && s;
    });
    expect(status.conditions.find((c: any) => c.type === 'Reconciling')?.reason).toBe('RelayNotReady');
    // A Stalled resource and its Event.
    const stalled = await waitFor('stalled condition', () =>
      get(['mc', '-n', APP_NS, 'stalled']).status?.conditions?.find(
        (c: any) => c.type === 'Stalled' && c.status === 'True',
      ),
    );
    expect(stalled.reason).toBe('SecretNotFound');
    await waitFor('SecretNotFound Event', () =>
      get(['events', '-n', APP_NS]).items.some(
        (e: any) => e.reason === 'SecretNotFound' && e.involvedObject.name === 'stalled',
      ),
    );
    expect(operatorLog).not.toMatch(/forbidden|\b403\b/i);
  });

  it('grants no more than the operator uses', () => {
    // What it needs.
    expect(canI('list', 'secrets', '-A')).toBe(true);
    expect(canI('patch', 'mailcontinuities', '--subresource=status', '-n', APP_NS)).toBe(true);
    expect(canI('update', `leases/${SA}`, '-n', NS)).toBe(true);
    // What it does not.
    expect(canI('get', 'secrets', '-n', APP_NS)).toBe(false);
    expect(canI('delete', 'secrets', '-n', APP_NS)).toBe(false);
    expect(canI('update', 'secrets', '-n', APP_NS)).toBe(false);
    expect(canI('delete', 'statefulsets', '-n', APP_NS)).toBe(false);
    expect(canI('patch', 'mailcontinuities', '-n', APP_NS)).toBe(false);
    expect(canI('delete', 'mailcontinuities', '-n', APP_NS)).toBe(false);
    expect(canI('create', 'pods', '-n', APP_NS)).toBe(false);
    expect(canI('create', 'pods', '--subresource=exec', '-n', APP_NS)).toBe(false);
    expect(canI('update', 'leases/someone-else', '-n', NS)).toBe(false);
    expect(canI('create', 'leases', '-n', 'default')).toBe(false);
    expect(canI('create', 'clusterrolebindings')).toBe(false);
    expect(canI('list', 'nodes')).toBe(false);
  });
});
