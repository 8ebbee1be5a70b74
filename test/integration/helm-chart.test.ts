// The Helm chart with the real helm binary: lint, template over a matrix of
// values, values.schema.json refusing bad values, then install, upgrade and
// uninstall on a real kube-apiserver (no kubelet: the operator pods never run,
// so the test checks the objects).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { operatorMetrics } from '../../src/operator/metrics.js';
import { createMetrics } from '../../src/relay/metrics.js';
import { binDir, startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { waitFor } from '../harness/wait.js';

const CHART = 'charts/mail-continuity-operator';
const CRD_FILE = 'crds/mailcontinuity.io_mailcontinuities.yaml';
const CRD_NAME = 'mailcontinuities.mailcontinuity.io';
const NS = 'mail-continuity-system';
// The apiserver version the harness builds (helm built from Go modules defaults to an old one).
const KUBE_VERSION = /k8s\.io\/kubernetes (v[\d.]+)/.exec(readFileSync('test/harness/go.mod', 'utf8'))![1]!;

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: any;
}

function helm(args: string[], kubeconfig?: string) {
  const res = spawnSync(join(binDir(), 'helm'), [...args, ...(kubeconfig ? ['--kubeconfig', kubeconfig] : [])], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, HELM_CACHE_HOME: '/tmp/mc-helm/cache', HELM_CONFIG_HOME: '/tmp/mc-helm/config' },
  });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

/** `helm template` with --set flags; throws with helm's stderr on failure. */
function render(...sets: string[]): Obj[] {
  const res = template(...sets);
  if (res.status !== 0) throw new Error(`helm template failed: ${res.stderr}`);
  return YAML.parseAllDocuments(res.stdout)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

function template(...sets: string[]) {
  return helm([
    'template',
    'mco',
    CHART,
    '--namespace',
    NS,
    '--kube-version',
    KUBE_VERSION,
    ...sets.flatMap((s) => ['--set', s]),
  ]);
}

const find = (objs: Obj[], kind: string, name?: string) =>
  objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
const one = (objs: Obj[], kind: string) => {
  const found = find(objs, kind);
  expect(found).toHaveLength(1);
  return found[0]!;
};
const kinds = (objs: Obj[]) => objs.map((o) => o.kind).sort();

// What the operator does with each resource (src/operator), and nothing more.
const expectedRules = [
  { apiGroups: ['mailcontinuity.io'], resources: ['mailcontinuities'], verbs: ['list', 'watch'] },
  { apiGroups: ['mailcontinuity.io'], resources: ['mailcontinuities/status'], verbs: ['patch'] },
  { apiGroups: ['mailcontinuity.io'], resources: ['mailcontinuities/finalizers'], verbs: ['update'] },
  { apiGroups: [''], resources: ['secrets'], verbs: ['list', 'watch', 'create', 'patch'] },
  {
    apiGroups: [''],
    resources: ['configmaps', 'services', 'serviceaccounts'],
    verbs: ['list', 'watch', 'create', 'patch'],
  },
  { apiGroups: ['apps'], resources: ['statefulsets'], verbs: ['list', 'watch', 'create', 'patch'] },
  { apiGroups: ['policy'], resources: ['poddisruptionbudgets'], verbs: ['list', 'watch', 'create', 'patch'] },
  { apiGroups: ['networking.k8s.io'], resources: ['networkpolicies'], verbs: ['list', 'watch', 'create', 'patch'] },
  { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
  { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
];

describe('helm lint and template', () => {
  it('lints clean (--strict), with defaults and with every option on', () => {
    for (const sets of [
      [],
      ['prometheusRule.enabled=true,metrics.serviceMonitor.enabled=true,dashboards.enabled=true'],
    ]) {
      const res = helm(['lint', '--strict', CHART, ...sets.flatMap((s) => ['--set', s])]);
      expect(res.stderr).toBe('');
      expect(res.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
      expect(res.status).toBe(0);
    }
  });

  it('defaults: CRD, RBAC, a 2-replica leader-elected Deployment, PDB and metrics Service', () => {
    const objs = render();
    expect(kinds(objs)).toEqual(
      [
        'ClusterRole',
        'ClusterRoleBinding',
        'CustomResourceDefinition',
        'Deployment',
        'PodDisruptionBudget',
        'Role',
        'RoleBinding',
        'Service',
        'ServiceAccount',
      ].sort(),
    );
    const deploy = one(objs, 'Deployment');
    expect(deploy.spec.replicas).toBe(2);
    const pod = deploy.spec.template.spec;
    expect(pod.serviceAccountName).toBe('mco-mail-continuity-operator');
    const c = pod.containers[0];
    expect(c.image).toBe('ghcr.io/mail-continuity/mail-continuity-operator:0.1.0');
    expect(c.args).toEqual(
      expect.arrayContaining([
        'operator',
        '--leader-elect=true',
        `--leader-election-namespace=${NS}`,
        '--leader-election-id=mco-mail-continuity-operator',
        '--metrics-bind-address=:8080',
        // The relays' NetworkPolicy admits these Pods to the admin port.
        `--operator-namespace=${NS}`,
        '--operator-pod-labels=app.kubernetes.io/name=mail-continuity-operator,app.kubernetes.io/instance=mco',
      ]),
    );
    expect(c.args.some((a: string) => a.startsWith('--metrics-scraper-'))).toBe(false);
    expect(c.args.some((a: string) => a.startsWith('--namespace='))).toBe(false);
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http-metrics' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http-metrics' });
    expect(c.ports).toEqual([{ name: 'http-metrics', containerPort: 8080, protocol: 'TCP' }]);
    expect(c.resources.requests).toEqual({ cpu: '50m', memory: '96Mi', 'ephemeral-storage': '64Mi' });
    expect(c.resources.limits.memory).toBe('256Mi');
    // The "restricted" Pod Security Standard.
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(one(objs, 'PodDisruptionBudget').spec).toEqual({
      minAvailable: 1,
      selector: { matchLabels: deploy.spec.selector.matchLabels },
    });
    const svc = one(objs, 'Service');
    expect(svc.spec.selector).toEqual(deploy.spec.selector.matchLabels);
    expect(svc.spec.ports[0]).toMatchObject({ port: 8080, targetPort: 'http-metrics' });
  });

  it('RBAC: exactly the verbs the operator uses, no wildcards; the Lease Role names its Lease', () => {
    const objs = render();
    const role = one(objs, 'ClusterRole');
    expect(role.rules).toEqual(expectedRules);
    expect(JSON.stringify(role.rules)).not.toContain('*');
    const binding = one(objs, 'ClusterRoleBinding');
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'mco-mail-continuity-operator', namespace: NS }]);
    const lease = one(objs, 'Role');
    expect(lease.metadata.namespace).toBe(NS);
    expect(lease.rules).toEqual([
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
      {
        apiGroups: ['coordination.k8s.io'],
        resources: ['leases'],
        resourceNames: ['mco-mail-continuity-operator'],
        verbs: ['get', 'update'],
      },
    ]);
  });

  it('the CRD is crds/ unchanged, plus helm.sh/resource-policy: keep (crds.keep defaults to true)', () => {
    const crd = one(render(), 'CustomResourceDefinition');
    expect(crd.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
    const source = YAML.parse(readFileSync(CRD_FILE, 'utf8'));
    const { annotations: _ignored, ...meta } = crd.metadata;
    expect({ ...crd, metadata: meta }).toEqual(source);
  });

  it('crds.keep=false: the CRD without the keep annotation; crds.enabled=false: no CRD', () => {
    const crd = one(render('crds.keep=false'), 'CustomResourceDefinition');
    expect(crd.metadata.annotations).toBeUndefined();
    expect(crd).toEqual(YAML.parse(readFileSync(CRD_FILE, 'utf8')));
    expect(find(render('crds.enabled=false'), 'CustomResourceDefinition')).toHaveLength(0);
  });

  it('watchNamespaces with one namespace: --namespace and a Role there instead of a ClusterRole', () => {
    const objs = render('watchNamespaces={mail}');
    expect(find(objs, 'ClusterRole')).toHaveLength(0);
    expect(find(objs, 'ClusterRoleBinding')).toHaveLength(0);
    const role = find(objs, 'Role', 'mco-mail-continuity-operator')[0]!;
    expect(role.metadata.namespace).toBe('mail');
    expect(role.rules).toEqual(expectedRules);
    const binding = find(objs, 'RoleBinding', 'mco-mail-continuity-operator')[0]!;
    expect(binding.metadata.namespace).toBe('mail');
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
    expect(one(objs, 'Deployment').spec.template.spec.containers[0].args).toContain('--namespace=mail');
  });

  it('refuses several watchNamespaces, and 2 replicas without leader election, saying what to do', () => {
    const many = template('watchNamespaces={a,b}');
    expect(many.status).not.toBe(0);
    expect(many.stderr).toContain('watchNamespaces: the operator watches one namespace or all of them, got 2 (a, b)');
    expect(many.stderr).toContain('install one release per namespace');
    const noLeader = template('leaderElection.enabled=false');
    expect(noLeader.status).not.toBe(0);
    expect(noLeader.stderr).toContain('replicaCount is 2 but leaderElection.enabled is false');
    const single = render('leaderElection.enabled=false', 'replicaCount=1');
    expect(one(single, 'Deployment').spec.template.spec.containers[0].args).toContain('--leader-elect=false');
    expect(find(single, 'PodDisruptionBudget')).toHaveLength(0);
    expect(find(single, 'Role')).toHaveLength(0);
  });

  it('allowedRelayImages: one --allowed-relay-images flag; none by default (the relay image repository)', () => {
    const args = (objs: Obj[]) => one(objs, 'Deployment').spec.template.spec.containers[0].args as string[];
    expect(args(render()).some((a) => a.startsWith('--allowed-relay-images'))).toBe(false);
    expect(args(render('allowedRelayImages={ghcr.io/mail-continuity/,registry.corp/}'))).toContain(
      '--allowed-relay-images=ghcr.io/mail-continuity/,registry.corp/',
    );
  });

  it('relayNetworkPolicy.metricsScraper: the scraper selectors as operator flags', () => {
    const objs = render(
      'relayNetworkPolicy.metricsScraper.namespaceSelector.kubernetes\\.io/metadata\\.name=monitoring',
      'relayNetworkPolicy.metricsScraper.podSelector.app=prometheus',
    );
    expect(one(objs, 'Deployment').spec.template.spec.containers[0].args).toEqual(
      expect.arrayContaining([
        '--metrics-scraper-namespace-labels=kubernetes.io/metadata.name=monitoring',
        '--metrics-scraper-pod-labels=app=prometheus',
      ]),
    );
  });

  it('monitoring: ServiceMonitor, relay PodMonitor, PrometheusRule with the alerts, dashboard ConfigMap', () => {
    const objs = render(
      'metrics.serviceMonitor.enabled=true',
      'metrics.relayPodMonitor.enabled=true',
      'prometheusRule.enabled=true',
      'dashboards.enabled=true',
    );
    const sm = one(objs, 'ServiceMonitor');
    expect(sm.spec.selector.matchLabels).toEqual(
      one(objs, 'Service').metadata.labels && one(objs, 'Deployment').spec.selector.matchLabels,
    );
    expect(sm.spec.endpoints[0]).toMatchObject({ port: 'http-metrics', honorLabels: true });
    const pm = one(objs, 'PodMonitor');
    expect(pm.spec.selector.matchLabels).toEqual({
      'app.kubernetes.io/name': 'mail-continuity-relay',
      'app.kubernetes.io/managed-by': 'mail-continuity-operator',
    });
    expect(pm.spec.namespaceSelector).toEqual({ any: true });
    expect(pm.spec.podMetricsEndpoints[0].port).toBe('http');
    const rules = one(objs, 'PrometheusRule').spec.groups.flatMap((g: any) => g.rules);
    expect(rules.map((r: any) => r.alert).sort()).toEqual(
      [
        'MailContinuityBackupUnreachable',
        'MailContinuityDeadLettersNearCap',
        'MailContinuityDeliveriesFailing',
        'MailContinuityExchangeDeferring',
        'MailContinuityExchangeUnhealthy',
        'MailContinuityFailoverActive',
        'MailContinuityMessagesExpired',
        'MailContinuityOperatorNoLeader',
        'MailContinuityQueueGrowing',
        'MailContinuityReconcileErrors',
        'MailContinuitySpoolNearlyFull',
      ].sort(),
    );
    const failover = rules.find((r: any) => r.alert === 'MailContinuityFailoverActive');
    expect(failover.expr).toBe('max by (namespace, name) (mailcontinuity_failover_active{}) > 0');
    expect(failover.annotations.description).toContain('mail is flowing to Gmail while Exchange is down');
    // Prometheus' own template variables survive Helm's templating.
    expect(failover.annotations.description).toContain('{{ $labels.namespace }}/{{ $labels.name }}');
    const cm = one(objs, 'ConfigMap');
    expect(cm.metadata.labels!.grafana_dashboard).toBe('1');
    const json = readFileSync(`${CHART}/dashboards/mail-continuity.json`, 'utf8');
    expect(JSON.parse(cm.data['mail-continuity.json'])).toEqual(JSON.parse(json));
  });

  it('alerts scoped to the watched namespace when there is one', () => {
    const objs = render(
      'prometheusRule.enabled=true',
      'watchNamespaces={mail}',
      'metrics.relayPodMonitor.enabled=true',
    );
    const rules = one(objs, 'PrometheusRule').spec.groups.flatMap((g: any) => g.rules);
    for (const r of rules.filter(
      (r: any) => !r.alert.startsWith('MailContinuityOperator') && r.alert !== 'MailContinuityReconcileErrors',
    )) {
      expect(r.expr).toContain('namespace="mail"');
    }
    expect(one(objs, 'PodMonitor').spec.namespaceSelector).toEqual({ matchNames: ['mail'] });
  });

  it('every metric the alerts and the dashboard query is one the operator or the relay exports', async () => {
    const objs = render('prometheusRule.enabled=true', 'dashboards.enabled=true');
    const exprs: string[] = one(objs, 'PrometheusRule')
      .spec.groups.flatMap((g: any) => g.rules)
      .map((r: any) => r.expr);
    const dashboard = JSON.parse(readFileSync(`${CHART}/dashboards/mail-continuity.json`, 'utf8'));
    for (const p of dashboard.panels) for (const t of p.targets) exprs.push(t.expr);
    for (const v of dashboard.templating.list) if (v.definition) exprs.push(v.definition);
    const exported = new Set<string>();
    for (const registry of [operatorMetrics().registry, createMetrics().registry]) {
      for (const m of await registry.getMetricsAsJSON()) {
        exported.add(m.name);
        if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(m.name + s);
      }
    }
    const used = new Set(
      exprs.flatMap((e) => e.match(/\b(relay_|mailcontinuity_|mail_continuity_operator_)[a-z_]+\b/g) ?? []),
    );
    expect(used.size).toBeGreaterThan(10);
    expect([...used].filter((m) => !exported.has(m))).toEqual([]);
    // The rest are the kubelet's volume stats (spool PVCs).
    const others = new Set(exprs.flatMap((e) => e.match(/\bkubelet_[a-z_]+\b/g) ?? []));
    expect([...others].sort()).toEqual(['kubelet_volume_stats_available_bytes', 'kubelet_volume_stats_capacity_bytes']);
  });
});

describe('values.schema.json refuses bad values at install time, naming the value', () => {
  it.each([
    ['replicaCount="two"', '--set-string', 'replicaCount', /replicaCount.*(got string, want integer|integer)/s],
    ['replicas=3 (unknown top-level key)', '--set', 'replicas=3', /additional properties 'replicas' not allowed/],
    ['image.pullPolicy=Sometimes', '--set', 'image.pullPolicy=Sometimes', /pullPolicy.*(Always|IfNotPresent|Never)/s],
    ['logLevel=verbose', '--set', 'logLevel=verbose', /logLevel/],
    ['logFormat=pretty', '--set', 'logFormat=pretty', /logFormat.*(json|text)/s],
    ['resyncPeriod=10 minutes', '--set', 'resyncPeriod=10 minutes', /resyncPeriod.*does not match pattern/s],
    ['watchNamespaces={Bad_NS}', '--set', 'watchNamespaces={Bad_NS}', /watchNamespaces\/0.*does not match pattern/s],
  ])('%s', (_name, flag, value, message) => {
    const arg = flag === '--set-string' ? 'replicaCount=two' : value;
    const res = helm(['template', 'mco', CHART, '--kube-version', KUBE_VERSION, flag, arg]);
    expect(res.status).not.toBe(0);
    expect(res.stderr).toContain("values don't meet the specifications of the schema");
    expect(res.stderr).toMatch(message);
  });
});

describe('helm install, upgrade and uninstall on a real apiserver', () => {
  let cp: ControlPlane;
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
  const install = (release: string, ...sets: string[]) => {
    const res = helm(
      [
        'upgrade',
        '--install',
        release,
        CHART,
        '--namespace',
        NS,
        '--create-namespace',
        ...sets.flatMap((s) => ['--set', s]),
      ],
      cp.kubeconfig,
    );
    if (res.status !== 0) throw new Error(`helm install failed: ${res.stderr}`);
    return res.stdout;
  };

  beforeAll(async () => {
    cp = await startControlPlane();
  }, 120_000);

  afterAll(async () => {
    await cp?.stop();
  });

  it('install creates the objects; the CRD is Established and takes a sample', async () => {
    const out = install('mco');
    expect(out).toContain('STATUS: deployed');
    expect(out).toContain('It reconciles MailContinuity resources in all namespaces');
    const deploy = get(['deployment', '-n', NS, 'mco-mail-continuity-operator']);
    expect(deploy.spec.replicas).toBe(2);
    expect(deploy.metadata.labels['app.kubernetes.io/managed-by']).toBe('Helm');
    for (const args of [
      ['serviceaccount', '-n', NS, 'mco-mail-continuity-operator'],
      ['service', '-n', NS, 'mco-mail-continuity-operator-metrics'],
      ['poddisruptionbudget', '-n', NS, 'mco-mail-continuity-operator'],
      ['clusterrole', 'mco-mail-continuity-operator'],
      ['clusterrolebinding', 'mco-mail-continuity-operator'],
      ['role', '-n', NS, 'mco-mail-continuity-operator-leader-election'],
      ['rolebinding', '-n', NS, 'mco-mail-continuity-operator-leader-election'],
    ]) {
      expect(exists(args)).toBe(true);
    }
    await waitFor('CRD Established', () =>
      get(['crd', CRD_NAME]).status?.conditions?.some((c: any) => c.type === 'Established' && c.status === 'True'),
    );
    cp.kubectl(['apply', '-n', 'default', '-f', 'examples/failover-only.yaml']);
    expect(get(['mc', '-n', 'default', 'corp-failover-only']).spec.mode).toBe('FailoverOnly');
  });

  it('upgrade changes the Deployment and records a new revision', () => {
    install('mco', 'replicaCount=3', 'logLevel=debug', 'logFormat=text');
    const deploy = get(['deployment', '-n', NS, 'mco-mail-continuity-operator']);
    expect(deploy.spec.replicas).toBe(3);
    expect(deploy.spec.template.spec.containers[0].args).toEqual(expect.arrayContaining(['--log-level=debug', '--log-format=text']));
    const history = JSON.parse(helm(['history', 'mco', '-n', NS, '-o', 'json'], cp.kubeconfig).stdout);
    expect(history.map((h: any) => h.revision)).toEqual([1, 2]);
  });

  it('uninstall with crds.keep=true keeps the CRD and the MailContinuity resources', async () => {
    const res = helm(['uninstall', 'mco', '-n', NS], cp.kubeconfig);
    expect(res.status).toBe(0);
    expect(res.stdout).toContain('kept due to the resource policy');
    await waitFor('Deployment gone', () => !exists(['deployment', '-n', NS, 'mco-mail-continuity-operator']));
    expect(exists(['clusterrole', 'mco-mail-continuity-operator'])).toBe(false);
    expect(exists(['crd', CRD_NAME])).toBe(true);
    expect(exists(['mc', '-n', 'default', 'corp-failover-only'])).toBe(true);
  });

  it('reinstall adopts the kept CRD; after an upgrade to crds.keep=false, uninstall removes it', async () => {
    install('mco');
    expect(get(['crd', CRD_NAME]).metadata.annotations['meta.helm.sh/release-name']).toBe('mco');
    install('mco', 'crds.keep=false');
    expect(get(['crd', CRD_NAME]).metadata.annotations?.['helm.sh/resource-policy']).toBeUndefined();
    const res = helm(['uninstall', 'mco', '-n', NS], cp.kubeconfig);
    expect(res.status).toBe(0);
    expect(res.stdout).not.toContain('kept due to the resource policy');
    await waitFor('CRD deleted', () => !exists(['crd', CRD_NAME]), 60_000);
  });

  it('crds.enabled=false installs no CRD', () => {
    install('bare', 'crds.enabled=false', 'fullnameOverride=bare');
    expect(exists(['crd', CRD_NAME])).toBe(false);
    expect(exists(['deployment', '-n', NS, 'bare'])).toBe(true);
  });
});
