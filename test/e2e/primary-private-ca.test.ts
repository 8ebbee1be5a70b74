// Exchange behind a certificate from an internal CA (made here with openssl):
// the relay's SMTP client and the operator's SMTP and HTTPS probes trust
// spec.primary.caBundle (or the caSecretRef key the operator mounts) in
// addition to the system roots, without insecureSkipTLSVerify; with the wrong
// CA, or none, they fail with an error that names the CA problem and the field.
// Last, the whole operator path on a real apiserver: PrimaryHealthy follows the
// CA in the Secret that spec.primary.caSecretRef names.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { API_VERSION, type MailContinuity } from '../../src/api/v1alpha1/mailcontinuity.js';
import { Controller } from '../../src/operator/controller.js';
import { KubeClient, type KubeObject } from '../../src/operator/kube/client.js';
import { MAILCONTINUITIES, SECRETS } from '../../src/operator/kube/resources.js';
import { operatorMetrics } from '../../src/operator/metrics.js';
import { startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { validSpec } from '../fixtures/mailcontinuity.js';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { probeHttps, probeSmtp } from '../../src/operator/health/probe.js';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { readSpoolDir } from '../../src/relay/spool/read.js';
import { startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { relayTestConfig, swaks } from '../harness/smtp-tools.js';
import { certSignedBy, privateCa } from '../harness/tls.js';
import { waitFor, waitUntil } from '../harness/wait.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
let postfix: PostfixInstance;
let https: Server;
let httpsPort: number;
let dir: string;
let corpCa: string;
let otherCa: string;
const relays: Relay[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'primary-ca-'));
  await chmod(dir, 0o755);
  const ca = privateCa(dir, 'corp');
  corpCa = readFileSync(ca.cert, 'utf8');
  otherCa = readFileSync(privateCa(dir, 'other').cert, 'utf8');
  const server = certSignedBy(ca, dir, 'exchange.corp.test', ['DNS:exchange.corp.test', 'IP:127.0.0.1'], 'exchange');
  postfix = await startPostfix({ domains: ['corp.example.com'], tls: server });
  https = createServer({ cert: readFileSync(server.cert), key: readFileSync(server.key) }, (_req, res) => res.end('OK'));
  await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
  httpsPort = (https.address() as AddressInfo).port;
}, 60_000);

afterAll(async () => {
  for (const r of relays) await r.stop().catch(() => undefined);
  await postfix?.destroy();
  await new Promise((resolve) => https?.close(resolve));
  await rm(dir, { recursive: true, force: true });
}, 60_000);

async function relayWith(name: string, primary: Record<string, unknown>, paths: Record<string, string> = {}): Promise<Relay> {
  const relay = await startRelay(
    relayTestConfig({
      spool: join(dir, name),
      primaryPort: postfix.port,
      instance: name,
      paths,
      spec: { primary: { host: '127.0.0.1', port: postfix.port, tls: 'STARTTLS', ...primary } },
    }),
    { log },
  );
  relays.push(relay);
  return relay;
}

const send = async (relay: Relay, id: string) => {
  const r = await swaks({ port: relay.smtpPort, to: 'alice@corp.example.com', headers: [`Message-ID: <${id}@partner.example.net>`] });
  expect(r.code).toBe(0);
};

async function deferralOf(relay: Relay, name: string): Promise<string> {
  await waitUntil(`a deferral by ${name}`, 30_000, async () =>
    new RegExp(`relay_deliveries_total\\{instance="${name}",destination="primary",outcome="deferred"\\} [1-9]`).test(
      await relay.metrics.registry.metrics(),
    ),
  );
  const [state] = await readSpoolDir(relay.config.paths.spool, 'queue');
  return state!.deliveries.primary!.lastError ?? '';
}

describe('relay to an Exchange with an internal CA', () => {
  it('delivers over verified TLS with spec.primary.caBundle', async () => {
    const relay = await relayWith('bundle', { caBundle: corpCa });
    await send(relay, 'ca-bundle');
    const msgs = await postfix.waitFor((m) => m.some((x) => x.messageId === 'ca-bundle@partner.example.net'), 30_000, 'ca-bundle');
    expect(msgs.find((x) => x.messageId === 'ca-bundle@partner.example.net')!.raw).toMatch(/\(using TLSv1\.[23]/);
  }, 60_000);

  it('delivers with the caSecretRef key mounted as a file (paths.primaryCa)', async () => {
    const relay = await relayWith('secret', { caSecretRef: { name: 'corp-ca' } }, { primaryCa: join(dir, 'corp-ca.crt') });
    await send(relay, 'ca-secret');
    await postfix.waitFor((m) => m.some((x) => x.messageId === 'ca-secret@partner.example.net'), 30_000, 'ca-secret');
  }, 60_000);

  it('defers with the wrong CA, naming the CA problem and the field', async () => {
    const relay = await relayWith('wrong', { caBundle: otherCa });
    await send(relay, 'ca-wrong');
    const error = await deferralOf(relay, 'wrong');
    expect(error).toMatch(/unable to verify the first certificate/);
    expect(error).toMatch(/signed neither by the CA of spec\.primary\.caBundle/);
    expect((await postfix.messages()).some((m) => m.messageId === 'ca-wrong@partner.example.net')).toBe(false);
  }, 60_000);

  it('defers without a CA, telling to set spec.primary.caBundle', async () => {
    const relay = await relayWith('none', {});
    await send(relay, 'ca-none');
    expect(await deferralOf(relay, 'none')).toMatch(/unable to verify the first certificate.*set spec\.primary\.caBundle/);
  }, 60_000);
});

describe("the operator's probes of an Exchange with an internal CA", () => {
  const smtp = (ca?: string) => probeSmtp({ host: '127.0.0.1', port: postfix.port, tls: 'STARTTLS', timeoutMs: 10_000, ...(ca ? { ca } : {}) });
  const httpsProbe = (ca?: string) =>
    probeHttps({ url: `https://127.0.0.1:${httpsPort}/owa/healthcheck.htm`, timeoutMs: 10_000, ...(ca ? { ca } : {}) });

  it('the SMTP probe trusts the CA given, and names the problem without it or with the wrong one', async () => {
    expect(await smtp(corpCa)).toMatchObject({ ok: true });
    expect(await smtp(otherCa)).toMatchObject({
      ok: false,
      reason: 'TLSError',
      message: expect.stringMatching(/unable to verify the first certificate.*signed neither by the CA of spec\.primary\.caBundle/),
    });
    expect(await smtp()).toMatchObject({ ok: false, reason: 'TLSError', message: expect.stringMatching(/set spec\.primary\.caBundle/) });
  }, 60_000);

  it('the HTTPS probe likewise', async () => {
    expect(await httpsProbe(corpCa)).toMatchObject({ ok: true });
    expect(await httpsProbe(otherCa)).toMatchObject({
      ok: false,
      reason: 'TLSError',
      message: expect.stringMatching(/unable to verify the first certificate.*signed neither by the CA/),
    });
    expect(await httpsProbe()).toMatchObject({ ok: false, reason: 'TLSError', message: expect.stringMatching(/set spec\.primary\.caBundle/) });
  }, 60_000);
});

describe('PrimaryHealthy with spec.primary.caSecretRef, through the operator on a real apiserver', () => {
  let cp: ControlPlane;
  let client: KubeClient;
  let controller: Controller;
  const NS = 'default';
  const secret = (name: string, data: Record<string, string>) => ({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: NS },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  });
  const primaryHealthy = async () => {
    const mc = await client.get<MailContinuity & KubeObject>(MAILCONTINUITIES, NS, 'corp');
    return mc.status?.conditions?.find((c) => c.type === 'PrimaryHealthy');
  };

  beforeAll(async () => {
    cp = await startControlPlane();
    cp.kubectl(['apply', '--server-side', '-f', 'crds/']);
    client = KubeClient.fromFile(cp.kubeconfig);
    await waitFor('CRD served', async () => (await client.list(MAILCONTINUITIES, NS)).items !== undefined, 30_000);
    await client.create(SECRETS, secret('gmail-sa', { 'credentials.json': '{"type":"service_account"}' }));
    // The CA as a cert-manager CA issuer Secret holds it: ca.crt beside the key that is not mounted.
    await client.create(SECRETS, secret('corp-ca', { 'ca.crt': corpCa, 'tls.key': 'not mounted' }));
    controller = new Controller({
      client,
      log,
      metrics: operatorMetrics(),
      fieldManager: 'mail-continuity-operator',
      defaultImage: 'example/mail-continuity:test',
      workers: 1,
      watchTimeoutSeconds: 30,
    });
    await controller.start();
  }, 120_000);

  afterAll(async () => {
    await controller?.stop();
    await cp?.stop();
  });

  it('is True with the CA of the Secret, and False naming the CA problem once the Secret holds another CA', async () => {
    const spec = validSpec();
    spec.primary = {
      host: '127.0.0.1',
      port: postfix.port,
      tls: 'STARTTLS',
      caSecretRef: { name: 'corp-ca' },
      health: { periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 1, successThreshold: 1 },
    };
    await client.create(MAILCONTINUITIES, {
      apiVersion: API_VERSION,
      kind: 'MailContinuity',
      metadata: { name: 'corp', namespace: NS },
      spec,
    } as unknown as MailContinuity & KubeObject);
    await waitFor('PrimaryHealthy=True', async () => (await primaryHealthy())?.status === 'True', 30_000);
    await client.mergePatch(SECRETS, NS, 'corp-ca', { data: { 'ca.crt': Buffer.from(otherCa).toString('base64') } });
    const cond = await waitFor(
      'PrimaryHealthy=False',
      async () => {
        const c = await primaryHealthy();
        return c?.status === 'False' ? c : undefined;
      },
      30_000,
    );
    expect(cond.reason).toBe('TLSError');
    expect(cond.message).toMatch(/unable to verify the first certificate.*signed neither by the CA of spec\.primary\.caBundle \/ caSecretRef/);
  }, 90_000);
});
