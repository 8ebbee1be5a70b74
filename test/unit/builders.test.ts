import { describe, expect, it } from '@jest/globals';
import YAML from 'yaml';
import { API_VERSION, MailContinuitySpec } from '../../src/api/v1alpha1/mailcontinuity.js';
import { buildChildren, configHash, configMap } from '../../src/operator/builders/index.js';
import type { KubeObject } from '../../src/operator/kube/types.js';
import { RelayConfig } from '../../src/api/relay/config.js';
import { parsedMailContinuity, podTemplateSample, validSpec } from '../fixtures/mailcontinuity.js';

const fixture = parsedMailContinuity;

const byKind = (objs: KubeObject[], kind: string, name?: string) =>
  objs.find((o) => o.kind === kind && (!name || o.metadata.name === name)) as Record<string, any>;

describe('builders', () => {
  const children = buildChildren(fixture(), { defaultImage: 'example/mc:1', adminToken: 'tok' });

  it('builds every child, in apply order, each with a controller ownerReference and our labels', () => {
    expect(children.map((c) => `${c.kind}/${c.metadata.name}`)).toEqual([
      'ServiceAccount/corp-relay',
      'NetworkPolicy/corp-relay',
      'Secret/corp-relay-admin',
      'ConfigMap/corp-relay-config',
      'Service/corp-relay-pods',
      'Service/corp-relay',
      'StatefulSet/corp-relay',
      'PodDisruptionBudget/corp-relay',
    ]);
    for (const c of children) {
      expect(c.metadata.namespace).toBe('mail');
      expect(c.metadata.ownerReferences).toEqual([
        { apiVersion: API_VERSION, kind: 'MailContinuity', name: 'corp', uid: 'u1', controller: true, blockOwnerDeletion: true },
      ]);
      expect(c.metadata.labels).toMatchObject({ 'app.kubernetes.io/managed-by': 'mail-continuity-operator' });
    }
  });

  it('renders a relay config the relay accepts, with secrets as file paths only', () => {
    const cm = byKind(children, 'ConfigMap');
    const parsed = RelayConfig.parse(YAML.parse(cm.data['relay.yaml']));
    expect(parsed.spec.domains).toEqual(['corp.example.com', 'example.org']);
    expect(parsed.paths.gmailServiceAccount).toBe('/etc/mail-continuity/gmail/credentials.json');
    expect(cm.data['relay.yaml']).not.toMatch(/private_key|password:/);
  });

  it('builds a restricted, spread, durable StatefulSet whose template changes with the config', () => {
    const sts = byKind(children, 'StatefulSet');
    const pod = sts.spec.template.spec;
    const c = pod.containers[0];
    expect(sts.spec.replicas).toBe(2);
    expect(c.image).toBe('example/mc:1');
    expect(c.args).toEqual(['relay', '--config', '/etc/mail-continuity/config/relay.yaml']);
    expect(c.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.topologySpreadConstraints[0].topologyKey).toBe('kubernetes.io/hostname');
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(c.env.map((e: { name: string }) => e.name)).not.toContain('GMAIL_KEY');
    expect(JSON.stringify(c.env)).not.toMatch(/secretKeyRef/); // secrets are files, never env
    // The heap cap and malloc settings the benchmarks measured the relay with.
    expect(c.env).toEqual(
      expect.arrayContaining([
        { name: 'NODE_OPTIONS', value: '--max-old-space-size=192' },
        { name: 'MALLOC_ARENA_MAX', value: '1' },
        { name: 'MALLOC_TRIM_THRESHOLD_', value: '131072' },
      ]),
    );
    expect(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage).toBe('10Gi');
    const hash = sts.spec.template.metadata.annotations['mailcontinuity.io/config-hash'];
    expect(hash).toBe(configHash(configMap(fixture())));
    const changed = buildChildren(fixture((s) => (s.domains = ['other.example.com'])), { defaultImage: 'x', adminToken: 'tok' });
    expect(byKind(changed, 'StatefulSet').spec.template.metadata.annotations['mailcontinuity.io/config-hash']).not.toBe(hash);
  });

  it('requests ephemeral storage, limited only when the spool is not an emptyDir; no CPU limit', () => {
    const resources = byKind(children, 'StatefulSet').spec.template.spec.containers[0].resources;
    expect(resources).toEqual({
      requests: { cpu: '100m', memory: '128Mi', 'ephemeral-storage': '64Mi' },
      limits: { memory: '256Mi', 'ephemeral-storage': '256Mi' },
    });
    const emptyDir = buildChildren(fixture((s) => (s.relay.persistence = { enabled: false })), { defaultImage: 'x', adminToken: 'tok' });
    expect(byKind(emptyDir, 'StatefulSet').spec.template.spec.containers[0].resources.limits).toEqual({ memory: '256Mi' });
  });

  it('uses emptyDir when persistence is disabled', () => {
    const sts = byKind(
      buildChildren(fixture((s) => (s.relay.persistence = { enabled: false })), { defaultImage: 'x', adminToken: 'tok' }),
      'StatefulSet',
    );
    expect(sts.spec.volumeClaimTemplates).toBeUndefined();
    expect(sts.spec.template.spec.volumes).toContainEqual({ name: 'spool', emptyDir: {} });
  });

  it('exposes port 25 to the relay port; Local traffic policy and source ranges for a LoadBalancer', () => {
    expect(byKind(children, 'Service', 'corp-relay').spec).toMatchObject({
      type: 'ClusterIP',
      ports: [{ name: 'smtp', port: 25, targetPort: 'smtp', protocol: 'TCP' }],
    });
    expect(byKind(children, 'Service', 'corp-relay').spec.externalTrafficPolicy).toBeUndefined();
    const lb = buildChildren(
      fixture((s) => (s.relay.service = { type: 'LoadBalancer', loadBalancerSourceRanges: ['198.51.100.0/24'] })),
      { defaultImage: 'x', adminToken: 'tok' },
    );
    expect(byKind(lb, 'Service', 'corp-relay').spec).toMatchObject({
      type: 'LoadBalancer',
      externalTrafficPolicy: 'Local',
      loadBalancerSourceRanges: ['198.51.100.0/24'],
    });
  });

  it('is pure: the same resource and options build the same children, the admin Secret holding the token given', () => {
    const opts = { defaultImage: 'x', adminToken: 'given-token' };
    const once = buildChildren(fixture(), opts);
    expect(buildChildren(fixture(), opts)).toEqual(once);
    expect(Buffer.from(byKind(once, 'Secret').data.token, 'base64').toString()).toBe('given-token');
  });

  it('mounts referenced secrets as files', () => {
    const withTls = buildChildren(
      fixture((s) => {
        s.relay.tlsSecretRef = { name: 'relay-tls' };
        s.primary.credentialsSecretRef = { name: 'exchange-auth' };
      }),
      { defaultImage: 'x', adminToken: 'tok' },
    );
    const pod = byKind(withTls, 'StatefulSet').spec.template.spec;
    expect(pod.volumes).toContainEqual({ name: 'tls', secret: { secretName: 'relay-tls', defaultMode: 0o440 } });
    expect(pod.volumes.find((v: { name: string }) => v.name === 'primary-credentials').secret.secretName).toBe('exchange-auth');
  });

  it('places the relay pods by spec.relay.podTemplate, keeping its own labels and annotations', () => {
    const mc = fixture((s) => (s.relay.podTemplate = podTemplateSample()));
    const sts = byKind(buildChildren(mc, { defaultImage: 'x', adminToken: 'tok' }), 'StatefulSet');
    const template = sts.spec.template;
    const sample = MailContinuitySpec.parse({ ...validSpec(), relay: { ...validSpec().relay, podTemplate: podTemplateSample() } })
      .relay.podTemplate!;
    expect(template.spec).toMatchObject({
      nodeSelector: { 'node-role.corp.example.com/mail': '' },
      tolerations: sample.tolerations,
      affinity: sample.affinity,
      priorityClassName: 'mail-critical',
      imagePullSecrets: [{ name: 'registry-corp' }],
    });
    // A constraint without labelSelector counts this MailContinuity's relay pods; it replaces the default spread.
    expect(template.spec.topologySpreadConstraints).toEqual([
      {
        maxSkew: 1,
        topologyKey: 'topology.kubernetes.io/zone',
        whenUnsatisfiable: 'DoNotSchedule',
        minDomains: 2,
        labelSelector: { matchLabels: sts.spec.selector.matchLabels },
      },
    ]);
    expect(template.metadata.labels).toMatchObject({
      ...sts.spec.selector.matchLabels,
      'corp.example.com/cost-center': 'it-mail',
      team: 'messaging',
    });
    expect(template.metadata.annotations).toMatchObject({
      'prometheus.io/scrape': 'true',
      'kubectl.kubernetes.io/default-container': 'relay',
    });
    // The relay does not read podTemplate: changing it does not change the relay config.
    expect(configHash(configMap(mc))).toBe(configHash(configMap(fixture())));
  });

  it('without podTemplate: no placement fields, host anti-affinity preferred, the default spread over hosts and zones', () => {
    const sts = byKind(children, 'StatefulSet');
    const pod = sts.spec.template.spec;
    for (const f of ['nodeSelector', 'tolerations', 'priorityClassName', 'imagePullSecrets']) expect(pod[f]).toBeUndefined();
    expect(pod.affinity).toEqual({
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          {
            weight: 100,
            podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: sts.spec.selector.matchLabels } },
          },
        ],
      },
    });
    expect(pod.topologySpreadConstraints.map((c: { topologyKey: string; whenUnsatisfiable: string }) => [c.topologyKey, c.whenUnsatisfiable])).toEqual([
      ['kubernetes.io/hostname', 'ScheduleAnyway'],
      ['topology.kubernetes.io/zone', 'ScheduleAnyway'],
    ]);
  });

  it('mounts only the CA key of spec.primary.caSecretRef and names its file in the relay config', () => {
    const mc = fixture((s) => (s.primary.caSecretRef = { name: 'corp-ca-issuer' }));
    const built = buildChildren(mc, { defaultImage: 'x', adminToken: 'tok' });
    const pod = byKind(built, 'StatefulSet').spec.template.spec;
    expect(pod.volumes).toContainEqual({
      name: 'primary-ca',
      secret: { secretName: 'corp-ca-issuer', defaultMode: 0o444, items: [{ key: 'ca.crt', path: 'ca.crt' }] },
    });
    expect(pod.containers[0].volumeMounts).toContainEqual({ name: 'primary-ca', mountPath: '/etc/mail-continuity/primary-ca', readOnly: true });
    const config = RelayConfig.parse(YAML.parse(byKind(built, 'ConfigMap').data['relay.yaml']));
    expect(config.paths.primaryCa).toBe('/etc/mail-continuity/primary-ca/ca.crt');
    expect(config.spec.primary.caSecretRef).toEqual({ name: 'corp-ca-issuer', key: 'ca.crt' });
  });

  it('mounts the ConfigMap of spec.relay.recipients and names its file in the relay config', () => {
    const mc = fixture((s) => Object.assign(s.relay, { recipients: { configMapRef: { name: 'corp-recipients', key: 'list' } } }));
    const built = buildChildren(mc, { defaultImage: 'x', adminToken: 'tok' });
    const pod = byKind(built, 'StatefulSet').spec.template.spec;
    expect(pod.volumes).toContainEqual({ name: 'recipients', configMap: { name: 'corp-recipients', items: [{ key: 'list', path: 'list' }] } });
    expect(pod.containers[0].volumeMounts).toContainEqual({ name: 'recipients', mountPath: '/etc/mail-continuity/recipients', readOnly: true });
    expect(RelayConfig.parse(YAML.parse(byKind(built, 'ConfigMap').data['relay.yaml'])).paths.recipients).toBe('/etc/mail-continuity/recipients/list');
    expect(RelayConfig.parse(YAML.parse(configMap(fixture()).data['relay.yaml']!)).paths.recipients).toBeUndefined();
  });

  it('renders spec.relay.proxyProtocol into the relay config (the relay reads the PROXY header of those proxies)', () => {
    const mc = fixture((s) => Object.assign(s.relay, { proxyProtocol: { trustedProxies: ['10.0.0.0/8'] } }));
    const config = RelayConfig.parse(YAML.parse(configMap(mc).data['relay.yaml']!));
    expect(config.spec.relay.proxyProtocol).toEqual({ trustedProxies: ['10.0.0.0/8'] });
    expect(RelayConfig.parse(YAML.parse(configMap(fixture()).data['relay.yaml']!)).spec.relay.proxyProtocol).toBeUndefined();
  });

  it('budgets one voluntary disruption at a time', () => {
    expect(byKind(children, 'PodDisruptionBudget').spec.maxUnavailable).toBe(1);
  });
});
