// The generated CRD on a real kube-apiserver: it installs, becomes
// Established, accepts the valid sample and rejects every invalid one with a
// message that names the field.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ApiException, ApiextensionsV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { GROUP, MailContinuitySpec, PLURAL, VERSION } from '../../src/api/v1alpha1/mailcontinuity.js';
import { startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { invalidCases, podTemplateSample, validSpec } from '../fixtures/mailcontinuity.js';

const CRD_FILE = 'crds/mailcontinuity.io_mailcontinuities.yaml';
let cp: ControlPlane;
let objects: CustomObjectsApi;

const sample = (name: string, spec: unknown) => ({
  apiVersion: `${GROUP}/${VERSION}`,
  kind: 'MailContinuity',
  metadata: { name, namespace: 'default' },
  spec,
});

beforeAll(async () => {
  cp = await startControlPlane();
  const kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfig);
  const crds = kc.makeApiClient(ApiextensionsV1Api);
  objects = kc.makeApiClient(CustomObjectsApi);
  // The way users install it. (client-node's typed CRD model would drop the
  // x-kubernetes-* extensions of a plain object, so it is not used to create it.)
  cp.kubectl(['apply', '--server-side', '-f', CRD_FILE]);
  // Wait for Established (and NamesAccepted) instead of sleeping.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const crd = await crds.readCustomResourceDefinition({ name: `${PLURAL}.${GROUP}` });
    const established = crd.status?.conditions?.find((c) => c.type === 'Established')?.status === 'True';
    if (established) break;
    if (Date.now() > deadline) throw new Error(`CRD not Established: ${JSON.stringify(crd.status)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}, 120_000);

afterAll(async () => {
  await cp?.stop();
});

describe('MailContinuity CRD on a real apiserver', () => {
  it('accepts the valid sample and applies the schema defaults', async () => {
    const created = (await objects.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: 'default',
      plural: PLURAL,
      body: sample('valid', validSpec()),
    })) as { spec: MailContinuitySpec };
    expect(created.spec.relay.replicas).toBe(2);
    expect(created.spec.relay.service.externalTrafficPolicy).toBe('Local');
    expect(created.spec.primary.health.failureThreshold).toBe(3);
    expect(created.spec.backup.gmail.serviceAccountSecretRef?.key).toBe('credentials.json');
    expect(created.spec.failover.manual).toBe('Auto');
  });

  it('fills failover.messageDeadline with its documented default (30m) when FailoverOnly names none', async () => {
    const spec = validSpec();
    delete spec.failover;
    const bare = (await objects.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: 'default',
      plural: PLURAL,
      body: sample('no-deadline', spec),
    })) as { spec: MailContinuitySpec };
    expect(bare.spec.mode).toBe('FailoverOnly');
    expect(bare.spec.failover).toMatchObject({ manual: 'Auto', messageDeadline: '30m' });
    const manual = (await objects.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: 'default',
      plural: PLURAL,
      body: sample('manual-no-deadline', { ...spec, failover: { manual: 'Active' } }),
    })) as { spec: MailContinuitySpec };
    expect(manual.spec.failover.messageDeadline).toBe('30m');
  });

  it('accepts spec.relay.proxyProtocol with its trusted proxies, as written', async () => {
    const spec = validSpec();
    Object.assign(spec.relay, { proxyProtocol: { trustedProxies: ['10.0.0.0/8', 'fd00::/8'] } });
    const created = (await objects.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: 'default',
      plural: PLURAL,
      body: sample('behind-proxies', spec),
    })) as { spec: MailContinuitySpec };
    expect(created.spec.relay.proxyProtocol).toEqual({ trustedProxies: ['10.0.0.0/8', 'fd00::/8'] });
  });

  it.each(invalidCases.map((c, i) => [c.name, c, i] as const))(
    'rejects: %s, with a message naming the field',
    async (_name, c, i) => {
      const spec = validSpec() as Parameters<typeof c.mutate>[0];
      c.mutate(spec);
      let error: unknown;
      try {
        await objects.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: 'default',
          plural: PLURAL,
          body: sample(`invalid-${i}`, spec),
        });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ApiException);
      const apiError = error as ApiException<string>;
      expect(apiError.code).toBe(422);
      const status = JSON.parse(apiError.body) as { message: string };
      expect(status.message).toContain(c.field);
      if (c.says) expect(status.message).toContain(c.says);
    },
  );

  it.each([
    ['longer than 46 characters', 'a'.repeat(47), 'at most 46 characters'],
    ['with a dot', 'corp.example', 'no dots'],
    ['starting with a digit', '1corp', 'starts with a letter'],
  ])('rejects a name %s (its children would get invalid names), naming metadata.name', async (_what, name, says) => {
    let error: unknown;
    try {
      await objects.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: 'default',
        plural: PLURAL,
        body: sample(name, validSpec()),
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ApiException);
    const status = JSON.parse((error as ApiException<string>).body) as { message: string };
    expect(status.message).toContain('metadata.name');
    expect(status.message).toContain(says);
  });

  it('accepts a relay podTemplate with every field, pruning none', async () => {
    const spec = validSpec();
    spec.relay.podTemplate = podTemplateSample();
    const created = (await objects.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: 'default',
      plural: PLURAL,
      body: sample('placed', spec),
    })) as { spec: MailContinuitySpec };
    expect(created.spec.relay.podTemplate).toEqual(MailContinuitySpec.parse(spec).relay.podTemplate);
  });

  it('accepts what Kubernetes accepts: quantity forms, 63-character DNS labels, a CA bundle', async () => {
    const spec = validSpec();
    spec.domains = ['corp.example.com', `${'a'.repeat(63)}.example.com`];
    spec.primary.caBundle = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    spec.relay.resources = {
      requests: { cpu: '250m', memory: '0.5Gi', 'ephemeral-storage': '1e9' },
      limits: { cpu: 1, memory: '512Mi', 'ephemeral-storage': '+2G' },
    };
    spec.relay.persistence = { size: 10737418240, storageClassName: 'fast.ssd-1' };
    const created = (await objects.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: 'default',
      plural: PLURAL,
      body: sample('quantities', spec),
    })) as { spec: MailContinuitySpec };
    expect(created.spec.relay.resources?.limits).toEqual({ cpu: 1, memory: '512Mi', 'ephemeral-storage': '+2G' });
  });

  it('accepts a name of 46 characters', async () => {
    const created = (await objects.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: 'default',
      plural: PLURAL,
      body: sample('c'.repeat(46), validSpec()),
    })) as { metadata: { name: string } };
    expect(created.metadata.name).toHaveLength(46);
  });

  it('shows printer columns and short name through kubectl', () => {
    const out = cp.kubectl(['get', 'mc', '-n', 'default']);
    expect(out.split('\n')[0]).toMatch(/^NAME\s+MODE\s+PRIMARY\s+FAILOVER\s+READY\s+AGE/);
    expect(out).toMatch(/valid\s+FailoverOnly/);
  });

  it('documents the spec for kubectl explain', () => {
    const out = cp.kubectl(['explain', 'mailcontinuity.spec']);
    expect(out).toContain('The desired state of mail continuity');
    expect(out).toMatch(/domains\s+<\[\]string> -required-/);
    expect(out).toContain('never an open relay');
    const relay = cp.kubectl(['explain', 'mailcontinuity.spec.relay.acceptFrom']);
    expect(relay).toContain('Client networks allowed to send mail');
    const deadline = cp.kubectl(['explain', 'mailcontinuity.spec.failover.messageDeadline']).replace(/\s+/g, ' ');
    expect(deadline).toContain('Default 30m');
    const port = cp.kubectl(['explain', 'mailcontinuity.spec.relay.port']).replace(/\s+/g, ' ');
    expect(port).toContain('Senders connect to relay.service.port');
  });

  it('installs with kubectl apply -f crds/ then kubectl apply -f examples/', () => {
    cp.kubectl(['apply', '--server-side', '-f', 'crds/']);
    const out = cp.kubectl(['apply', '--server-side', '-f', 'examples/', '-n', 'default']);
    expect(out).toMatch(/mailcontinuity\.mailcontinuity\.io\/\S+ serverside-applied/);
  });
});
