// spec.relay.podTemplate on a real apiserver: a MailContinuity applied with
// kubectl, every placement field in the relay StatefulSet the controller
// applies (so the apiserver's own validation of the pod template took it),
// a change followed, and the default spread back once the field is removed.
// And spec.primary.caSecretRef: a missing Secret stalls the resource, naming
// the field; once it exists, only its CA key is mounted into the relay pods.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import YAML from 'yaml';
import { API_VERSION, MailContinuitySpec, type MailContinuity } from '../../src/api/v1alpha1/mailcontinuity.js';
import { Controller } from '../../src/operator/controller.js';
import { KubeClient, type KubeObject } from '../../src/operator/kube/client.js';
import { MAILCONTINUITIES, SECRETS, STATEFULSETS } from '../../src/operator/kube/resources.js';
import { operatorMetrics } from '../../src/operator/metrics.js';
import { startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { waitFor } from '../harness/wait.js';
import { podTemplateSample, validSpec } from '../fixtures/mailcontinuity.js';

const NS = 'default';
let cp: ControlPlane;
let client: KubeClient;
let controller: Controller;

type PodSpec = Record<string, unknown> & { topologySpreadConstraints: { topologyKey: string; whenUnsatisfiable: string }[] };
type Sts = KubeObject & {
  spec: { selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: PodSpec } };
};

const apply = (spec: unknown, name = 'placed') =>
  cp.kubectl(
    ['apply', '--server-side', '--field-manager', 'platform-team', '-f', '-'],
    YAML.stringify({ apiVersion: API_VERSION, kind: 'MailContinuity', metadata: { name, namespace: NS }, spec }),
  );

const relaySts = (until: (s: Sts) => boolean, what: string, name = 'placed') =>
  waitFor(what, async () => {
    const s = await client.get<Sts>(STATEFULSETS, NS, `${name}-relay`).catch(() => undefined);
    return s && until(s) ? s : undefined;
  });

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
  controller = new Controller({
    client,
    log: pino({ level: process.env.MC_TEST_LOG ?? 'silent' }),
    metrics: operatorMetrics(),
    fieldManager: 'mail-continuity-operator',
    defaultImage: 'example/mail-continuity:test',
    workers: 1,
    watchTimeoutSeconds: 30,
    probes: false,
  });
  await controller.start();
}, 120_000);

afterAll(async () => {
  await controller?.stop();
  await cp?.stop();
});

describe('relay podTemplate', () => {
  it('renders every field of a kubectl-applied podTemplate into the relay StatefulSet', async () => {
    const spec = validSpec();
    spec.relay.podTemplate = podTemplateSample();
    apply(spec);
    const sts = await relaySts((s) => s.spec.template.spec.priorityClassName !== undefined, 'placed relay StatefulSet');
    const want = MailContinuitySpec.parse(spec).relay.podTemplate!;
    const pod = sts.spec.template.spec;
    expect(pod.nodeSelector).toEqual(want.nodeSelector);
    expect(pod.tolerations).toEqual(want.tolerations);
    expect(pod.affinity).toEqual(want.affinity);
    expect(pod.priorityClassName).toBe('mail-critical');
    expect(pod.imagePullSecrets).toEqual([{ name: 'registry-corp' }]);
    expect(pod.topologySpreadConstraints).toEqual([
      expect.objectContaining({
        topologyKey: 'topology.kubernetes.io/zone',
        whenUnsatisfiable: 'DoNotSchedule',
        minDomains: 2,
        labelSelector: { matchLabels: sts.spec.selector.matchLabels },
      }),
    ]);
    expect(sts.spec.template.metadata.labels).toMatchObject({ ...sts.spec.selector.matchLabels, team: 'messaging' });
    expect(sts.spec.template.metadata.annotations['prometheus.io/scrape']).toBe('true');
  });

  it('follows a change, and spreads by default again once podTemplate is removed', async () => {
    const spec = validSpec();
    spec.relay.podTemplate = { ...podTemplateSample(), priorityClassName: 'mail-critical-2' };
    apply(spec);
    await relaySts((s) => s.spec.template.spec.priorityClassName === 'mail-critical-2', 'new priority class');
    apply(validSpec());
    const sts = await relaySts((s) => s.spec.template.spec.priorityClassName === undefined, 'podTemplate removed');
    const pod = sts.spec.template.spec;
    expect([pod.nodeSelector, pod.tolerations, pod.imagePullSecrets]).toEqual([undefined, undefined, undefined]);
    // The default: relay pods prefer distinct nodes.
    expect(JSON.stringify(pod.affinity)).toContain('"topologyKey":"kubernetes.io/hostname"');
    expect(pod.topologySpreadConstraints.map((c) => `${c.topologyKey} ${c.whenUnsatisfiable}`)).toEqual([
      'kubernetes.io/hostname ScheduleAnyway',
      'topology.kubernetes.io/zone ScheduleAnyway',
    ]);
    expect(sts.spec.template.metadata.labels.team).toBeUndefined();
  });

  it('stalls on a missing caSecretRef Secret naming the field, then mounts only its CA key', async () => {
    const spec = validSpec();
    spec.primary.caSecretRef = { name: 'corp-ca' };
    apply(spec, 'ca');
    await waitFor('Stalled on the CA Secret', async () => {
      const mc = await client.get<MailContinuity & KubeObject>(MAILCONTINUITIES, NS, 'ca');
      const stalled = mc.status?.conditions?.find((c) => c.type === 'Stalled');
      return stalled?.status === 'True' && stalled.message.includes('spec.primary.caSecretRef');
    });
    await client.create(SECRETS, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'corp-ca', namespace: NS },
      data: { 'ca.crt': Buffer.from('-----BEGIN CERTIFICATE-----\n').toString('base64'), 'tls.key': 'eA==' },
    });
    const sts = await relaySts(() => true, 'relay StatefulSet with the CA', 'ca');
    const volumes = sts.spec.template.spec.volumes as { name: string; secret?: unknown }[];
    expect(volumes.find((v) => v.name === 'primary-ca')?.secret).toEqual({
      secretName: 'corp-ca',
      defaultMode: 0o444,
      items: [{ key: 'ca.crt', path: 'ca.crt' }],
    });
  });
});
