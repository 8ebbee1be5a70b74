// The GitOps examples (deploy/gitops/, deploy/argocd/) applied server-side to a real
// kube-apiserver with the CRDs of the projects they use installed: Argo CD's Application,
// Sealed Secrets' SealedSecret and External Secrets' ExternalSecret (upstream CRDs, copied
// into test/fixtures/crds/ with their version) and the product's own. Argo CD itself does not
// run: the test checks that every object is accepted as written and that the pieces fit (paths,
// versions, the Secret name the MailContinuity references, the chart values the schema takes).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { binDir, startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { waitFor } from '../harness/wait.js';

const GITOPS = 'deploy/gitops';
const version = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
const CRDS = [
  'mailcontinuities.mailcontinuity.io',
  'applications.argoproj.io',
  'sealedsecrets.bitnami.com',
  'externalsecrets.external-secrets.io',
];
const HEALTH_KEY = 'resource.customizations.health.mailcontinuity.io_MailContinuity';
// The apiserver version the harness builds (helm built from Go modules defaults to an old one).
const KUBE_VERSION = /k8s\.io\/kubernetes (v[\d.]+)/.exec(readFileSync('test/harness/go.mod', 'utf8'))![1]!;

let cp: ControlPlane;
const get = (args: string[]) => JSON.parse(cp.kubectl(['get', ...args, '-o', 'json']));
const yamlDocs = (path: string) =>
  YAML.parseAllDocuments(readFileSync(path, 'utf8'))
    .map((d) => d.toJS())
    .filter(Boolean);
const apps = () =>
  readdirSync(join(GITOPS, 'apps'))
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => yamlDocs(join(GITOPS, 'apps', f)));

beforeAll(async () => {
  cp = await startControlPlane();
  cp.kubectl(['apply', '--server-side', '-f', 'crds/']);
  for (const f of readdirSync('test/fixtures/crds'))
    cp.kubectl(['apply', '--server-side', '-f', join('test/fixtures/crds', f)]);
  for (const crd of CRDS) {
    await waitFor(`CRD ${crd} Established`, () =>
      get(['crd', crd]).status?.conditions?.some((c: any) => c.type === 'Established' && c.status === 'True'),
    );
  }
  cp.kubectl(['create', 'namespace', 'argocd']);
}, 120_000);

afterAll(async () => {
  await cp?.stop();
});

describe('Argo CD Applications', () => {
  it('deploy/gitops/apps/ and deploy/argocd/application.yaml apply server-side', () => {
    const out = cp.kubectl([
      'apply',
      '--server-side',
      '-f',
      join(GITOPS, 'apps'),
      '-f',
      'deploy/argocd/application.yaml',
    ]);
    expect(out).toContain('application.argoproj.io/mail-continuity-operator serverside-applied');
    expect(
      get(['applications', '-n', 'argocd'])
        .items.map((a: any) => a.metadata.name)
        .sort(),
    ).toEqual(['mail-continuity-operator', 'mail-production', 'mail-staging']);
  });

  it('the operator comes first (sync wave 0) from the chart of this version; the environments follow', () => {
    const byName = new Map(apps().map((a: any) => [a.metadata.name, a]));
    const op = byName.get('mail-continuity-operator');
    expect(op.spec.source).toMatchObject({ path: 'charts/mail-continuity-operator', targetRevision: `v${version}` });
    expect(op.metadata.annotations['argocd.argoproj.io/sync-wave']).toBe('0');
    for (const env of ['staging', 'production']) {
      const app = byName.get(`mail-${env}`);
      expect(app.metadata.annotations['argocd.argoproj.io/sync-wave']).toBe('1');
      // deploy/gitops/ stands for the configuration repository: its paths are relative to it.
      expect(existsSync(join(GITOPS, app.spec.source.path, 'kustomization.yaml'))).toBe(true);
      expect(app.spec.syncPolicy.syncOptions).toEqual(expect.arrayContaining(['ServerSideApply=true']));
    }
  });

  it("the operator Application's values pass the chart's values.schema.json", () => {
    const dir = mkdtempSync(join(tmpdir(), 'mc-gitops-'));
    try {
      for (const app of [...apps(), ...yamlDocs('deploy/argocd/application.yaml')]) {
        const values = app.spec.source.helm?.valuesObject;
        if (!values) continue;
        writeFileSync(join(dir, 'values.yaml'), YAML.stringify(values));
        const res = spawnSync(
          join(binDir(), 'helm'),
          [
            'template',
            app.spec.source.helm.releaseName,
            app.spec.source.path,
            '--kube-version',
            KUBE_VERSION,
            '-f',
            join(dir, 'values.yaml'),
          ],
          {
            encoding: 'utf8',
            env: { ...process.env, HELM_CACHE_HOME: join(dir, 'cache'), HELM_CONFIG_HOME: join(dir, 'config') },
          },
        );
        expect(res.stderr).toBe('');
        expect(res.status).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the environments (kustomize), with the Gmail key out of Git', () => {
  it.each([
    ['staging', 'mail-staging', 'sealedsecrets', 'bitnami.com'],
    ['production', 'mail', 'externalsecrets', 'external-secrets.io'],
  ])('%s applies server-side: Namespace, MailContinuity and the key', (env, ns, keyResource) => {
    cp.kubectl(['apply', '--server-side', '-k', join(GITOPS, 'environments', env)]);
    const mc = get(['mailcontinuity', '-n', ns, 'corp']);
    const secretName = mc.spec.backup.gmail.serviceAccountSecretRef.name;
    const key = get([keyResource, '-n', ns, 'gmail-service-account']);
    // The Secret it makes is the one the MailContinuity references, with the key it reads.
    if (keyResource === 'sealedsecrets') {
      expect(key.spec.template.metadata.name).toBe(secretName);
      expect(Object.keys(key.spec.encryptedData)).toEqual(['credentials.json']);
    } else {
      expect(key.spec.target.name).toBe(secretName);
      expect(key.spec.data.map((d: any) => d.secretKey)).toEqual(['credentials.json']);
    }
    expect(get(['namespace', ns]).metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });

  it('the environments differ only where their patches say', () => {
    expect(get(['mc', '-n', 'mail-staging', 'corp']).spec.relay.replicas).toBe(1);
    expect(get(['mc', '-n', 'mail', 'corp']).spec.relay).toMatchObject({
      replicas: 3,
      tlsSecretRef: { name: 'relay-tls' },
    });
  });
});

describe('the MailContinuity health check for Argo CD', () => {
  const lua = readFileSync('deploy/argocd/health.lua', 'utf8');

  it('as Argo CD chart values (configs.cm) and as the argocd-cm patch: the same Lua', () => {
    const values = YAML.parse(readFileSync('deploy/argocd/argocd-values.yaml', 'utf8'));
    expect(values.configs.cm[HEALTH_KEY]).toBe(lua);
    const cm = YAML.parse(readFileSync('deploy/argocd/argocd-cm.yaml', 'utf8'));
    expect(cm.data[HEALTH_KEY]).toBe(lua);
  });

  it('the argocd-cm patch applies to an existing argocd-cm', () => {
    cp.kubectl(['-n', 'argocd', 'create', 'configmap', 'argocd-cm', '--from-literal=url=https://argocd.corp.example']);
    cp.kubectl([
      '-n',
      'argocd',
      'patch',
      'configmap',
      'argocd-cm',
      '--type',
      'merge',
      '--patch-file',
      'deploy/argocd/argocd-cm.yaml',
    ]);
    const data = get(['configmap', '-n', 'argocd', 'argocd-cm']).data;
    expect(data).toMatchObject({ url: 'https://argocd.corp.example', [HEALTH_KEY]: lua });
  });
});
