// The primary transport's TLS modes against a Postfix that offers STARTTLS
// with a self-signed certificate: verified by default (so delivery is deferred,
// never sent in clear or to an unverified server), delivered with
// insecureSkipTLSVerify, and the hop is encrypted.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { readSpoolDir } from '../../src/relay/spool/read.js';
import { startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { relayTestConfig, swaks, TEST_DOMAINS } from '../harness/smtp-tools.js';
import { selfSignedCert } from '../harness/tls.js';
import { waitUntil } from '../harness/wait.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
let postfix: PostfixInstance;
let dir: string;
const relays: Relay[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-tls-'));
  await chmod(dir, 0o755);
  const { cert, key } = selfSignedCert(dir, 'exchange.test', 'exchange');
  postfix = await startPostfix({ domains: TEST_DOMAINS, tls: { cert, key } });
}, 60_000);

afterAll(async () => {
  for (const r of relays) await r.stop().catch(() => undefined);
  await postfix?.destroy();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe('primary over STARTTLS', () => {
  it('verifies the certificate by default: an untrusted Exchange certificate defers delivery', async () => {
    const relay = await startRelay(
      relayTestConfig({ spool: join(dir, 'verify'), primaryPort: postfix.port, instance: 'verify', spec: { primary: { host: '127.0.0.1', port: postfix.port, tls: 'STARTTLS' } } }),
      { log },
    );
    relays.push(relay);
    const r = await swaks({ port: relay.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <tls-verify@partner.example.net>'] });
    expect(r.code).toBe(0);
    await waitUntil('a deferral', 30_000, async () => /relay_deliveries_total\{instance="verify",destination="primary",outcome="deferred"\} [1-9]/.test(await relay.metrics.registry.metrics()));
    const [state] = await readSpoolDir(relay.config.paths.spool, 'queue');
    expect(state!.deliveries.primary!.lastError).toMatch(/certificate/i);
    expect((await postfix.messages()).some((m) => m.messageId === 'tls-verify@partner.example.net')).toBe(false);
  }, 60_000);

  it('with insecureSkipTLSVerify the message goes over TLS', async () => {
    const relay = await startRelay(
      relayTestConfig({
        spool: join(dir, 'skip'),
        primaryPort: postfix.port,
        instance: 'skip',
        spec: { primary: { host: '127.0.0.1', port: postfix.port, tls: 'STARTTLS', insecureSkipTLSVerify: true } },
      }),
      { log },
    );
    relays.push(relay);
    const r = await swaks({ port: relay.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <tls-skip@partner.example.net>'] });
    expect(r.code).toBe(0);
    const msgs = await postfix.waitFor((m) => m.some((x) => x.messageId === 'tls-skip@partner.example.net'), 30_000, 'tls-skip');
    expect(msgs.find((x) => x.messageId === 'tls-skip@partner.example.net')!.raw).toMatch(/\(using TLSv1\.[23]/);
  }, 60_000);
});
