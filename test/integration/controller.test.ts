// The controller on a real control plane (etcd + kube-apiserver +
// kube-controller-manager for garbage collection). There is no kubelet, so no
// relay pod ever runs: where a test needs a ready relay, it writes the
// StatefulSet status the way the StatefulSet controller would.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import type { MailContinuity } from '../../src/api/v1alpha1/mailcontinuity.js';
import { Controller } from '../../src/operator/controller.js';
import { KubeClient, isNotFound, type KubeObject } from '../../src/operator/kube/client.js';
import {
  CHILD_TYPES,
  CONFIGMAPS,
  EVENTS,
  MAILCONTINUITIES,
  SECRETS,
  STATEFULSETS,
} from '../../src/operator/kube/resources.js';
import { operatorMetrics, type OperatorMetrics } from '../../src/operator/metrics.js';
import { startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { waitFor } from '../harness/wait.js';
import { createMailContinuity } from '../fixtures/mailcontinuity.js';

let cp: ControlPlane;
let client: KubeClient;
let controller: Controller;
let metrics: OperatorMetrics;
const NS = 'default';
const log = pino({ level: process.env.MC_TEST_LOG ?? 'silent' });

type MC = MailContinuity & KubeObject;
const getMc = (name: string) => client.get<MC>(MAILCONTINUITIES, NS, name);
const condition = (mc: MC, type: string) => mc.status?.conditions?.find((c) => c.type === type);
const childNames = (name: string) => ({
  ServiceAccount: `${name}-relay`,
  Secret: `${name}-relay-admin`,
  ConfigMap: `${name}-relay-config`,
  Service: `${name}-relay`,
  StatefulSet: `${name}-relay`,
  PodDisruptionBudget: `${name}-relay`,
  NetworkPolicy: `${name}-relay`,
});

const createMc = (name: string, mutate?: Parameters<typeof createMailContinuity>[3]) =>
  createMailContinuity(client, NS, name, mutate);

async function createGmailSecret(name = 'gmail-sa') {
  try {
    await client.create(SECRETS, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: NS },
      data: { 'credentials.json': Buffer.from('{"type":"service_account"}').toString('base64') },
    });
  } catch (err) {
    if (!(err as Error).message.includes('409')) throw err;
  }
}

/** What the StatefulSet controller and kubelets would report once every relay pod is ready. */
async function markRelayReady(name: string) {
  const sts = await client.get<KubeObject & { spec: { replicas: number } }>(STATEFULSETS, NS, `${name}-relay`);
  const n = sts.spec.replicas;
  await client.mergePatch(
    STATEFULSETS,
    NS,
    sts.metadata.name,
    {
      status: {
        observedGeneration: sts.metadata.generation,
        replicas: n,
        readyReplicas: n,
        updatedReplicas: n,
        availableReplicas: n,
        currentReplicas: n,
      },
    },
    'status',
  );
}

async function writes(): Promise<number> {
  const m = await metrics.apiRequests.get();
  return m.values
    .filter((v) => ['patch', 'post', 'put', 'delete'].includes(String(v.labels.verb)))
    .reduce((a, v) => a + v.value, 0);
}

beforeAll(async () => {
  cp = await startControlPlane({ controllerManager: true });
  cp.kubectl(['apply', '--server-side', '-f', 'crds/']);
  metrics = operatorMetrics();
  client = KubeClient.fromFile(cp.kubeconfig, (verb, resource) => metrics.apiRequests.inc({ verb, resource }));
  controller = new Controller({
    client,
    log,
    metrics,
    fieldManager: 'mail-continuity-operator',
    defaultImage: 'example/mail-continuity:test',
    workers: 2,
    watchTimeoutSeconds: 30,
    // The fixtures' primaries are names that resolve nowhere: health and failover have their own tests.
    probes: false,
  });
  await waitFor('CRD served', async () => (await client.list(MAILCONTINUITIES, NS)).items !== undefined, 30_000);
  await controller.start();
}, 120_000);

afterAll(async () => {
  await controller?.stop();
  await cp?.stop();
});

describe('controller', () => {
  it('creates every child with a controller ownerReference, then reports Ready once the relay is', async () => {
    await createGmailSecret();
    const mc = await createMc('alpha');
    for (const [kind, name] of Object.entries(childNames('alpha'))) {
      const child = await waitFor(`${kind} ${name}`, () =>
        client.get(CHILD_TYPES[kind]!, NS, name).catch(() => undefined),
      );
      expect(child.metadata.ownerReferences).toEqual([
        expect.objectContaining({ kind: 'MailContinuity', name: 'alpha', uid: mc.metadata.uid, controller: true }),
      ]);
    }
    const reconciling = await waitFor('Reconciling', async () => {
      const m = await getMc('alpha');
      return condition(m, 'Reconciling')?.status === 'True' ? m : undefined;
    });
    expect(condition(reconciling, 'Ready')).toMatchObject({ status: 'False', reason: 'RelayNotReady' });
    expect(reconciling.status?.observedGeneration).toBe(reconciling.metadata.generation);

    await markRelayReady('alpha');
    const ready = await waitFor('Ready', async () => {
      const m = await getMc('alpha');
      return condition(m, 'Ready')?.status === 'True' ? m : undefined;
    });
    expect(condition(ready, 'Reconciling')).toBeUndefined();
    expect(ready.status?.relay).toMatchObject({ replicas: 2, readyReplicas: 2 });
  });

  it('writes nothing more once the resource is reconciled (no status write loop)', async () => {
    await waitFor('alpha Ready', async () => condition(await getMc('alpha'), 'Ready')?.status === 'True');
    await waitFor('queue idle', () => controller.queue.length === 0);
    const before = await writes();
    const reconciles = async () => (await metrics.reconciles.get()).values.reduce((a, v) => a + v.value, 0);
    const r0 = await reconciles();
    // Touch the object in a way that enqueues it without changing it: an annotation.
    await client.mergePatch(MAILCONTINUITIES, NS, 'alpha', { metadata: { annotations: { touched: 'yes' } } });
    await waitFor('a reconcile of the touched object', async () => (await reconciles()) > r0);
    await waitFor('queue idle', () => controller.queue.length === 0);
    expect((await writes()) - before).toBe(1); // only our own annotation patch
  });

  it('rolls the relay when the spec changes', async () => {
    const before = await client.get<any>(STATEFULSETS, NS, 'alpha-relay');
    await client.mergePatch(MAILCONTINUITIES, NS, 'alpha', {
      spec: { relay: { replicas: 3 }, domains: ['corp.example.com', 'new.example.com'] },
    });
    const after = await waitFor('StatefulSet updated', async () => {
      const s = await client.get<any>(STATEFULSETS, NS, 'alpha-relay');
      return s.spec.replicas === 3 ? s : undefined;
    });
    const hash = (s: any) => s.spec.template.metadata.annotations['mailcontinuity.io/config-hash'];
    expect(hash(after)).not.toBe(hash(before));
    const cm = await client.get<any>(CONFIGMAPS, NS, 'alpha-relay-config');
    expect(cm.data['relay.yaml']).toContain('new.example.com');
    const mc = await waitFor('observedGeneration caught up', async () => {
      const m = await getMc('alpha');
      return m.status?.observedGeneration === m.metadata.generation ? m : undefined;
    });
    expect(condition(mc, 'Ready')).toMatchObject({ status: 'False', reason: 'RelayNotReady' });
  });

  it('restores a child that someone edits or deletes', async () => {
    // kubectl edit of a field we own, kubectl scale, kubectl delete.
    await client.mergePatch(CONFIGMAPS, NS, 'alpha-relay-config', { data: { 'relay.yaml': 'spec: {}\n' } });
    await waitFor('ConfigMap content restored', async () =>
      (await client.get<any>(CONFIGMAPS, NS, 'alpha-relay-config')).data['relay.yaml'].includes('new.example.com'),
    );
    // Down by hand: restored at once. (Up by hand, the extra relays would first be drained, and
    // no relay Pod runs here to answer: test/unit/scale-down.test.ts covers that.)
    cp.kubectl(['scale', 'statefulset/alpha-relay', '--replicas=1', '-n', NS]);
    await waitFor(
      'replicas restored',
      async () => (await client.get<any>(STATEFULSETS, NS, 'alpha-relay')).spec.replicas === 3,
    );
    await client.delete(CONFIGMAPS, NS, 'alpha-relay-config');
    await waitFor('ConfigMap recreated', () => client.get(CONFIGMAPS, NS, 'alpha-relay-config').catch(() => undefined));
  });

  it('stalls on a missing Secret, naming it, and becomes ready by itself once it exists', async () => {
    await createMc('beta', (s) => (s.backup.gmail.serviceAccountSecretRef = { name: 'beta-gmail' }));
    const stalled = await waitFor('Stalled', async () => {
      const m = await getMc('beta');
      return condition(m, 'Stalled')?.status === 'True' ? m : undefined;
    });
    expect(condition(stalled, 'Stalled')).toMatchObject({ reason: 'SecretNotFound' });
    expect(condition(stalled, 'Stalled')!.message).toContain(
      'Secret default/beta-gmail (spec.backup.gmail.serviceAccountSecretRef) not found',
    );
    expect(condition(stalled, 'Ready')).toMatchObject({ status: 'False', reason: 'SecretNotFound' });
    const events = await client.list<any>(EVENTS, NS);
    expect(
      events.items.some(
        (e) => e.involvedObject.name === 'beta' && e.reason === 'SecretNotFound' && e.type === 'Warning',
      ),
    ).toBe(true);
    await expect(client.get(STATEFULSETS, NS, 'beta-relay')).rejects.toThrow(/404/);

    await createGmailSecret('beta-gmail');
    await waitFor('StatefulSet created after the Secret appeared', () =>
      client.get(STATEFULSETS, NS, 'beta-relay').catch(() => undefined),
    );
    await markRelayReady('beta');
    const ready = await waitFor('Ready', async () => {
      const m = await getMc('beta');
      return condition(m, 'Ready')?.status === 'True' ? m : undefined;
    });
    expect(condition(ready, 'Stalled')).toBeUndefined();
  });

  it('holds only the Secrets it references: an unrelated one is known by name, its data never read', async () => {
    const cachedSecrets = async () =>
      (await metrics.cachedObjects.get()).values.find((v) => v.labels.resource === 'secrets')?.value;
    const gets0 = controller.secrets.reads;
    await client.create(SECRETS, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'unrelated', namespace: NS },
      data: { password: Buffer.from('not the operator’s business').toString('base64') },
    });
    await waitFor('the unrelated Secret in the name index', () => controller.secretIndex.get(NS, 'unrelated'));
    expect(controller.secretIndex.get(NS, 'unrelated')).not.toHaveProperty('data');
    expect(controller.secrets.get(NS, 'unrelated')).toBeUndefined();
    // With data: the relays' admin Secrets (its label) and the two referenced, gmail-sa and beta-gmail.
    const admin = controller.children.Secret!.list(NS).map((s) => s.metadata.name);
    expect(admin.every((n) => n.endsWith('-relay-admin'))).toBe(true);
    expect(await cachedSecrets()).toBe(admin.length + 2);
    expect((await client.list(SECRETS, NS)).items.length).toBeGreaterThan(admin.length + 2);
    expect(controller.secrets.reads).toBe(gets0);

    // A change of a referenced Secret is read again and reconciled: its key removed, then back.
    const key = 'credentials.json';
    await client.replace(SECRETS, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'beta-gmail', namespace: NS }, data: {} });
    const missing = await waitFor('Stalled on the missing key', async () => {
      const m = await getMc('beta');
      return condition(m, 'Stalled')?.status === 'True' ? m : undefined;
    });
    expect(condition(missing, 'Stalled')!.message).toContain(key);
    await client.replace(SECRETS, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'beta-gmail', namespace: NS },
      data: { [key]: Buffer.from('{"type":"service_account"}').toString('base64') },
    });
    await waitFor('Ready again', async () => condition(await getMc('beta'), 'Ready')?.status === 'True');
    expect(controller.secrets.reads).toBeGreaterThanOrEqual(gets0 + 2);
    expect(controller.secrets.get(NS, 'unrelated')).toBeUndefined();
  });

  it('has its children garbage collected when it is deleted', async () => {
    await client.delete(MAILCONTINUITIES, NS, 'beta');
    for (const [kind, name] of Object.entries(childNames('beta'))) {
      await waitFor(
        `${kind} ${name} collected`,
        async () => {
          try {
            await client.get(CHILD_TYPES[kind]!, NS, name);
            return false;
          } catch (err) {
            return isNotFound(err);
          }
        },
        60_000,
      );
    }
  });

  it('recovers by itself after the apiserver restarts', async () => {
    const restarts = async () => (await metrics.informerRestarts.get()).values.reduce((a, v) => a + v.value, 0);
    const r0 = await restarts();
    await cp.restartApiServer();
    await waitFor('informers restarted', async () => (await restarts()) > r0, 60_000);
    await createMc('gamma');
    await waitFor(
      'gamma reconciled after the restart',
      () => client.get(STATEFULSETS, NS, 'gamma-relay').catch(() => undefined),
      60_000,
    );
    // The watch is live again: an edit is corrected without waiting for a resync.
    await client.delete(CONFIGMAPS, NS, 'gamma-relay-config');
    await waitFor('ConfigMap recreated', () => client.get(CONFIGMAPS, NS, 'gamma-relay-config').catch(() => undefined));
  });
});
