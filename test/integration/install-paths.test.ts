// The install paths of docs/install.md, composed as a platform team does, with the real
// helm and kubectl on a real kube-apiserver (no kubelet: the operator pods never run, the
// test checks what was installed and who owns the CRD):
//   - the CRDs first (kubectl apply --server-side -f crds/), then the chart with
//     crds.enabled=false — or with the default crds.enabled=true, which leaves a CRD it
//     does not own alone instead of failing with "invalid ownership metadata";
//   - the chart alone, one release per namespace: the first release owns the CRD, the
//     second (same release name, another namespace) installs beside it without taking it.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { binDir, startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { waitFor } from '../harness/wait.js';

const CHART = 'charts/mail-continuity-operator';
const CRD_NAME = 'mailcontinuities.mailcontinuity.io';
const RELEASE = 'mail-continuity-operator';

let cp: ControlPlane;

function helm(...args: string[]) {
  const res = spawnSync(join(binDir(), 'helm'), [...args, '--kubeconfig', cp.kubeconfig], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, HELM_CACHE_HOME: '/tmp/mc-helm/cache', HELM_CONFIG_HOME: '/tmp/mc-helm/config' },
  });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

/** helm upgrade --install RELEASE in `ns`, watching only `ns`; throws with helm's stderr. */
function install(ns: string, ...sets: string[]): string {
  const res = helm(
    'upgrade',
    '--install',
    RELEASE,
    CHART,
    '--namespace',
    ns,
    '--create-namespace',
    '--set',
    `watchNamespaces={${ns}}`,
    ...sets.flatMap((s) => ['--set', s]),
  );
  if (res.status !== 0) throw new Error(`helm install in ${ns} failed: ${res.stderr}`);
  return res.stdout;
}

const get = (args: string[]) => JSON.parse(cp.kubectl(['get', ...args, '-o', 'json']));
const exists = (args: string[]) => {
  try {
    cp.kubectl(['get', ...args]);
    return true;
  } catch (err) {
    if (/NotFound|not found/.test((err as Error).message)) return false;
    throw err;
  }
};
const crdAnnotations = (): Record<string, string> => get(['crd', CRD_NAME]).metadata.annotations ?? {};
const established = () =>
  waitFor('CRD Established', () =>
    get(['crd', CRD_NAME]).status?.conditions?.some((c: any) => c.type === 'Established' && c.status === 'True'),
  );

/** A MailContinuity from examples/ in `ns`: the CRD serves it there. */
function applySample(ns: string) {
  cp.kubectl(['apply', '--server-side', '-n', ns, '-f', 'examples/failover-only.yaml']);
  expect(get(['mc', '-n', ns, 'corp-failover-only']).spec.mode).toBe('FailoverOnly');
}

async function removeCrd() {
  cp.kubectl(['delete', 'crd', CRD_NAME, '--wait=false']);
  await waitFor('CRD deleted', () => !exists(['crd', CRD_NAME]), 60_000);
}

beforeAll(async () => {
  cp = await startControlPlane();
}, 120_000);

afterAll(async () => {
  await cp?.stop();
});

describe('the CRDs first, then the chart', () => {
  it('kubectl apply --server-side -f crds/, then helm install with crds.enabled=false', async () => {
    cp.kubectl(['apply', '--server-side', '-f', 'crds/']);
    await established();
    const out = install('crd-first-a', 'crds.enabled=false');
    expect(out).toContain('STATUS: deployed');
    expect(out).toContain('crds.enabled is false');
    expect(crdAnnotations()['meta.helm.sh/release-name']).toBeUndefined();
    expect(exists(['deployment', '-n', 'crd-first-a', RELEASE])).toBe(true);
    applySample('crd-first-a');
  });

  it('the chart with its default crds.enabled=true leaves the CRD it does not own alone', () => {
    const out = install('crd-first-b');
    expect(out).toContain('STATUS: deployed');
    expect(out).toContain('already exists and is managed by no Helm release');
    const ann = crdAnnotations();
    expect(ann['meta.helm.sh/release-name']).toBeUndefined();
    expect(ann['helm.sh/resource-policy']).toBeUndefined();
    // An upgrade keeps leaving it alone.
    expect(install('crd-first-b', 'replicaCount=3')).toContain('STATUS: deployed');
    expect(get(['deployment', '-n', 'crd-first-b', RELEASE]).spec.replicas).toBe(3);
    applySample('crd-first-b');
  });

  it('uninstalling both releases keeps the CRD and the resources (kubectl owns it)', async () => {
    for (const ns of ['crd-first-a', 'crd-first-b']) expect(helm('uninstall', RELEASE, '-n', ns).status).toBe(0);
    await waitFor('Deployments gone', () => !exists(['deployment', '-n', 'crd-first-b', RELEASE]));
    expect(exists(['crd', CRD_NAME])).toBe(true);
    expect(exists(['mc', '-n', 'crd-first-b', 'corp-failover-only'])).toBe(true);
    await removeCrd();
  });
});

describe('the chart alone, one release per namespace', () => {
  it('the first release installs and owns the CRD', async () => {
    const out = install('team-a');
    expect(out).toContain('STATUS: deployed');
    expect(out).toContain('It reconciles MailContinuity resources in namespace team-a only');
    await established();
    expect(crdAnnotations()).toMatchObject({
      'meta.helm.sh/release-name': RELEASE,
      'meta.helm.sh/release-namespace': 'team-a',
      'helm.sh/resource-policy': 'keep',
    });
  });

  it('a second release of the same name in another namespace installs beside it, the CRD left to the first', () => {
    const out = install('team-b');
    expect(out).toContain('STATUS: deployed');
    expect(out).toContain(`managed by the Helm release ${RELEASE} in namespace team-a`);
    expect(crdAnnotations()['meta.helm.sh/release-namespace']).toBe('team-a');
    for (const ns of ['team-a', 'team-b']) {
      const deploy = get(['deployment', '-n', ns, RELEASE]);
      expect(deploy.spec.template.spec.containers[0].args).toContain(`--namespace=${ns}`);
      // Namespaced RBAC only: nothing cluster-wide for the two releases to fight over.
      expect(exists(['role', '-n', ns, RELEASE])).toBe(true);
      expect(exists(['rolebinding', '-n', ns, RELEASE])).toBe(true);
    }
    expect(exists(['clusterrole', RELEASE])).toBe(false);
    applySample('team-b');
  });

  it('upgrades of either release keep the CRD with the first', () => {
    install('team-b', 'logLevel=debug');
    install('team-a', 'logLevel=debug');
    expect(crdAnnotations()['meta.helm.sh/release-namespace']).toBe('team-a');
  });

  it('uninstalling the second release leaves the CRD and the first release', async () => {
    expect(helm('uninstall', RELEASE, '-n', 'team-b').status).toBe(0);
    await waitFor('team-b Deployment gone', () => !exists(['deployment', '-n', 'team-b', RELEASE]));
    expect(exists(['crd', CRD_NAME])).toBe(true);
    expect(exists(['deployment', '-n', 'team-a', RELEASE])).toBe(true);
    expect(exists(['mc', '-n', 'team-b', 'corp-failover-only'])).toBe(true);
  });

  it('with crds.enabled=false a release never touches the CRD', () => {
    const out = install('team-c', 'crds.enabled=false');
    expect(out).toContain('STATUS: deployed');
    expect(crdAnnotations()['meta.helm.sh/release-namespace']).toBe('team-a');
  });
});
