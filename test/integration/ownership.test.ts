// What the operator trusts, on a real apiserver: it sends the relays' admin
// token only to Pods its own StatefulSet controls (not to a Pod that merely
// carries the relay's labels), it adopts no object it does not own, and it runs
// no relay image outside its allowed list.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import type { MailContinuity } from '../../src/api/v1alpha1/mailcontinuity.js';
import { Controller } from '../../src/operator/controller.js';
import { PodDirectory } from '../../src/operator/failover/relays.js';
import { Informer } from '../../src/operator/kube/informer.js';
import { KubeClient, type KubeObject } from '../../src/operator/kube/client.js';
import { CONFIGMAPS, EVENTS, MAILCONTINUITIES, PODS, SECRETS, STATEFULSETS } from '../../src/operator/kube/resources.js';
import { operatorMetrics } from '../../src/operator/metrics.js';
import { startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { waitFor } from '../harness/wait.js';
import { createMailContinuity } from '../fixtures/mailcontinuity.js';

let cp: ControlPlane;
let client: KubeClient;
let controller: Controller;
const NS = 'default';
const log = pino({ level: process.env.MC_TEST_LOG ?? 'silent' });
const relayLabels = {
  'app.kubernetes.io/name': 'mail-continuity-relay',
  'app.kubernetes.io/instance': 'corp',
  'app.kubernetes.io/managed-by': 'mail-continuity-operator',
  'mailcontinuity.io/name': 'corp',
};

type MC = MailContinuity & KubeObject;
const condition = (mc: MC, type: string) => mc.status?.conditions?.find((c) => c.type === type);

const createMc = (name: string, mutate?: Parameters<typeof createMailContinuity>[3]) =>
  createMailContinuity(client, NS, name, mutate);

/** A Pod with the relay's labels, Running with `ip` as the kubelet would report it. */
async function runningPod(name: string, ip: string, owner?: KubeObject): Promise<void> {
  await client.create(PODS, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: NS,
      labels: relayLabels,
      ...(owner
        ? {
            ownerReferences: [
              { apiVersion: 'apps/v1', kind: 'StatefulSet', name: owner.metadata.name, uid: owner.metadata.uid!, controller: true },
            ],
          }
        : {}),
    },
    spec: { automountServiceAccountToken: false, containers: [{ name: 'relay', image: 'example/relay:test' }] },
  });
  await client.mergePatch(PODS, NS, name, { status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } }, 'status');
}

beforeAll(async () => {
  cp = await startControlPlane();
  cp.kubectl(['apply', '--server-side', '-f', 'crds/']);
  client = KubeClient.fromFile(cp.kubeconfig);
  controller = new Controller({
    client,
    log,
    metrics: operatorMetrics(),
    fieldManager: 'mail-continuity-operator',
    defaultImage: 'example/mail-continuity:test',
    workers: 2,
    watchTimeoutSeconds: 30,
    probes: false,
  });
  await waitFor('CRD served', async () => (await client.list(MAILCONTINUITIES, NS)).items !== undefined, 30_000);
  await client.create(SECRETS, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'gmail-sa', namespace: NS },
    data: { 'credentials.json': Buffer.from('{"type":"service_account"}').toString('base64') },
  });
  await controller.start();
}, 120_000);

afterAll(async () => {
  await controller?.stop();
  await cp?.stop();
});

describe('the relays the operator talks to', () => {
  it('are the Pods its StatefulSet controls: a Pod with the relay labels only gets no token', async () => {
    await createMc('corp');
    const sts = await waitFor('StatefulSet', () => client.get(STATEFULSETS, NS, 'corp-relay').catch(() => undefined));
    await runningPod('corp-relay-0', '10.244.0.10', sts);
    await runningPod('corp-relay-evil', '10.244.0.66');

    const pods = new Informer<KubeObject>(client, PODS, { log, namespace: NS });
    const statefulSets = new Informer<KubeObject>(client, STATEFULSETS, { log, namespace: NS });
    pods.start();
    statefulSets.start();
    try {
      await Promise.all([pods.synced, statefulSets.synced]);
      expect(pods.list(NS).map((p) => p.metadata.name).sort()).toEqual(['corp-relay-0', 'corp-relay-evil']);
      // The directory is where the continuity loop gets the URLs it sends the token to.
      expect(new PodDirectory(pods, statefulSets).endpoints(NS, 'corp')).toEqual([
        { pod: 'corp-relay-0', url: 'http://10.244.0.10:8080' },
      ]);
    } finally {
      await Promise.all([pods.stop(), statefulSets.stop()]);
    }
  });
});

describe('children the operator did not create', () => {
  it('are not adopted: a planted admin Secret stalls the resource (ChildNotOwned) and keeps its token', async () => {
    await client.create(SECRETS, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'taken-relay-admin', namespace: NS },
      data: { token: Buffer.from('planted-token').toString('base64') },
    });
    await createMc('taken');
    const stalled = await waitFor('Stalled', async () => {
      const m = await client.get<MC>(MAILCONTINUITIES, NS, 'taken');
      return condition(m, 'Stalled')?.status === 'True' ? m : undefined;
    });
    expect(condition(stalled, 'Stalled')).toMatchObject({ reason: 'ChildNotOwned' });
    expect(condition(stalled, 'Stalled')!.message).toContain('Secret default/taken-relay-admin already exists and is not owned');
    expect(condition(stalled, 'Ready')).toMatchObject({ status: 'False', reason: 'ChildNotOwned' });
    const planted = await client.get<KubeObject & { data: Record<string, string> }>(SECRETS, NS, 'taken-relay-admin');
    expect(Buffer.from(planted.data.token!, 'base64').toString()).toBe('planted-token');
    expect(planted.metadata.ownerReferences).toBeUndefined();
    expect(JSON.stringify(planted.metadata.managedFields)).not.toContain('"manager":"mail-continuity-operator"');
    await expect(client.get(STATEFULSETS, NS, 'taken-relay')).rejects.toThrow(/404/);
    const events = await client.list<any>(EVENTS, NS);
    expect(events.items.some((e) => e.involvedObject.name === 'taken' && e.reason === 'ChildNotOwned')).toBe(true);

    // Once it is gone, the operator creates its own.
    await client.delete(SECRETS, NS, 'taken-relay-admin');
    const own = await waitFor('the operator\'s own admin Secret', () =>
      client.get<KubeObject & { data: Record<string, string> }>(SECRETS, NS, 'taken-relay-admin').catch(() => undefined),
    );
    expect(own.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'MailContinuity', name: 'taken', uid: stalled.metadata.uid });
    expect(Buffer.from(own.data.token!, 'base64').toString()).not.toBe('planted-token');
    await waitFor('StatefulSet', () => client.get(STATEFULSETS, NS, 'taken-relay').catch(() => undefined));
  });

  it('are not adopted when the cache does not hold them either (an unlabelled ConfigMap)', async () => {
    await client.create(CONFIGMAPS, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'other-relay-config', namespace: NS },
      data: { 'relay.yaml': 'mine: true\n' },
    });
    await createMc('other');
    const stalled = await waitFor('Stalled', async () => {
      const m = await client.get<MC>(MAILCONTINUITIES, NS, 'other');
      return condition(m, 'Stalled')?.status === 'True' ? m : undefined;
    });
    expect(condition(stalled, 'Stalled')!.message).toContain('ConfigMap default/other-relay-config already exists');
    const cm = await client.get<KubeObject & { data: Record<string, string> }>(CONFIGMAPS, NS, 'other-relay-config');
    expect(cm.data).toEqual({ 'relay.yaml': 'mine: true\n' });
    await expect(client.get(STATEFULSETS, NS, 'other-relay')).rejects.toThrow(/404/);
  });
});

describe('spec.relay.image', () => {
  it('runs only an allowed image: another one stalls the resource (RelayImageNotAllowed) until it is fixed', async () => {
    await createMc('pick', (s) => (s.relay = { ...s.relay, image: 'evil.example/reads-your-secrets:1' }));
    const stalled = await waitFor('Stalled', async () => {
      const m = await client.get<MC>(MAILCONTINUITIES, NS, 'pick');
      return condition(m, 'Stalled')?.status === 'True' ? m : undefined;
    });
    expect(condition(stalled, 'Stalled')).toMatchObject({ reason: 'RelayImageNotAllowed' });
    expect(condition(stalled, 'Stalled')!.message).toContain('"evil.example/reads-your-secrets:1" is not an allowed relay image');
    await expect(client.get(STATEFULSETS, NS, 'pick-relay')).rejects.toThrow(/404/);

    // The operator's own repository (its relay image is example/mail-continuity:test) is allowed.
    await client.mergePatch(MAILCONTINUITIES, NS, 'pick', { spec: { relay: { image: 'example/mail-continuity:next' } } });
    const sts = await waitFor('StatefulSet', () =>
      client.get<KubeObject & { spec: any }>(STATEFULSETS, NS, 'pick-relay').catch(() => undefined),
    );
    expect(sts.spec.template.spec.containers[0].image).toBe('example/mail-continuity:next');
  });
});
