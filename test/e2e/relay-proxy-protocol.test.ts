// spec.relay.proxyProtocol end to end: Debian's HAProxy in front of the relay
// on loopback (test/harness/haproxy.ts), sending PROXY v1 and v2, swaks and
// raw sessions as clients bound to 127.0.0.2-127.0.0.4, Postfix as Exchange:
// acceptFrom, the Received header, the per-address limit and the audit log
// see the client the proxy reported.
// HAProxy connects to the relay from 127.0.0.1, the only trusted proxy;
// acceptFrom is 127.0.0.2/31 (127.0.0.2 and 127.0.0.3).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { startHaproxy, type Haproxy } from '../harness/haproxy.js';
import { startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { RawSmtp, relayTestConfig, swaks } from '../harness/smtp-tools.js';
import { waitFor } from '../harness/wait.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
let postfix: PostfixInstance;
let dir: string;
const stops: (() => Promise<void>)[] = [];
const sessions: RawSmtp[] = [];
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-proxy-'));
  postfix = await startPostfix({ domains: ['corp.example.com'], recipients: ['alice@corp.example.com'] });
}, 60_000);

afterAll(async () => {
  for (const s of sessions) s.close();
  for (const stop of stops.reverse()) await stop().catch(() => undefined);
  await postfix?.destroy();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

/** A relay (with or without proxyProtocol) and an HAProxy in front of it. */
async function relayBehindHaproxy(o: { proxyProtocol: boolean; maxClientsPerAddress?: number; failoverActive?: boolean }): Promise<{ relay: Relay; haproxy: Haproxy }> {
  const i = ++n;
  const relay = await startRelay(
    relayTestConfig({
      spool: join(dir, `r${i}`),
      primaryPort: postfix.port,
      instance: `proxy-${i}`,
      spec: {
        relay: {
          acceptFrom: ['127.0.0.2/31'],
          ...(o.proxyProtocol ? { proxyProtocol: { trustedProxies: ['127.0.0.1/32'] } } : {}),
        },
        ...(o.failoverActive ? { failover: { messageDeadline: '15m', manual: 'Active' as const } } : {}),
      },
      tuning: {
        ...(o.maxClientsPerAddress ? { maxClientsPerAddress: o.maxClientsPerAddress } : {}),
        // Without proxyProtocol the PROXY line is the client talking first: greet at once, so that
        // the answer shows the address the relay sees rather than the early-talker refusal.
        ...(o.proxyProtocol ? {} : { greetingDelay: false }),
      },
    }),
    { log },
  );
  stops.push(() => relay.stop());
  const haproxy = await startHaproxy({ backendPort: relay.smtpPort, dir: await mkdtemp(join(dir, 'haproxy-')) });
  stops.push(() => haproxy.stop());
  return { relay, haproxy };
}

async function open(port: number, from: string): Promise<RawSmtp> {
  const s = await RawSmtp.open(port, 10_000, from);
  sessions.push(s);
  return s;
}

async function rejectedCount(relay: Relay, reason: string): Promise<number> {
  const m = await relay.metrics.registry.getSingleMetric('relay_smtp_rejected_total')!.get();
  return m.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

describe('relay behind HAProxy with spec.relay.proxyProtocol', () => {
  let relay: Relay;
  let haproxy: Haproxy;
  beforeAll(async () => {
    ({ relay, haproxy } = await relayBehindHaproxy({ proxyProtocol: true }));
  }, 60_000);

  it.each([
    ['v1', () => haproxy.v1Port],
    ['v2', () => haproxy.v2Port],
  ])('PROXY %s: acceptFrom and the Received header at Exchange see the client 127.0.0.2, not the proxy', async (version, port) => {
    const id = `proxy-${version}@partner.example.net`;
    const res = await swaks({ port: port(), to: 'alice@corp.example.com', headers: [`Message-Id: <${id}>`], extra: ['--local-interface', '127.0.0.2'] });
    expect(res.replies.at(-2)).toMatch(/^250 /); // the answer to DATA (the last is QUIT's 221)
    const msgs = await postfix.waitFor((m) => m.some((x) => x.messageId === id), 30_000, id);
    const raw = msgs.find((x) => x.messageId === id)!.raw;
    // The relay's own Received line names the client the proxy reported.
    expect(raw).toMatch(/Received: from mx\.partner\.example\.net \(unknown \[127\.0\.0\.2\]\)\r?\n\s+by relay\.test/);
    expect(raw).not.toMatch(/Received: from mx\.partner\.example\.net \(unknown \[127\.0\.0\.1\]\)/);
  });

  it('a client outside acceptFrom is refused by the address the proxy reports (127.0.0.4), v1 and v2', async () => {
    for (const port of [haproxy.v1Port, haproxy.v2Port]) {
      const res = await swaks({ port, to: 'alice@corp.example.com', extra: ['--local-interface', '127.0.0.4'] });
      expect(res.replies.join('\n')).toMatch(/^554 5\.7\.1 Client host \[127\.0\.0\.4\] not allowed/m);
    }
  });

  it('a direct connection from an address that is not a trusted proxy is refused, with or without a PROXY header of its own', async () => {
    const before = await rejectedCount(relay, 'proxy-untrusted');
    const plain = await open(relay.smtpPort, '127.0.0.2');
    expect(await plain.reply()).toBe('421 4.7.1 Connections must come through a trusted proxy (PROXY protocol)');
    expect(await plain.reply()).toBe(''); // closed
    const spoofing = await open(relay.smtpPort, '127.0.0.3');
    spoofing.write('PROXY TCP4 127.0.0.2 127.0.0.1 40000 25\r\n');
    expect(await spoofing.reply()).toBe('421 4.7.1 Connections must come through a trusted proxy (PROXY protocol)');
    expect(await spoofing.reply()).toBe('');
    expect(await rejectedCount(relay, 'proxy-untrusted')).toBe(before + 2);
  });

  it('a connection from the trusted proxy without a PROXY header is refused', async () => {
    const s = await open(relay.smtpPort, '127.0.0.1');
    s.write('EHLO mx.partner.example.net\r\n');
    expect(await s.reply()).toMatch(/^421 4\.7\.0 PROXY protocol header required: no PROXY protocol header/);
    expect(await s.reply()).toBe('');
    expect(await rejectedCount(relay, 'proxy-header')).toBeGreaterThanOrEqual(1);
  });
});

describe('the audit log behind HAProxy', () => {
  it('names the client the proxy reported in the record of each copy for Google', async () => {
    // A failover (manual Active): every message is copied to the backup, and each copy is audited first.
    const { relay, haproxy } = await relayBehindHaproxy({ proxyProtocol: true, failoverActive: true });
    const id = 'proxy-audit@partner.example.net';
    const res = await swaks({ port: haproxy.v2Port, to: 'alice@corp.example.com', headers: [`Message-Id: <${id}>`], extra: ['--local-interface', '127.0.0.3'] });
    expect(res.replies.at(-2)).toMatch(/^250 /);
    const intents = await waitFor('the copy-intent record', async () => {
      const lines = (await readFile(join(relay.config.paths.spool, 'audit.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
      const recs = lines.map((l) => JSON.parse(l) as { action: string; messageId: string | null; client?: string | null });
      const found = recs.filter((r) => r.action === 'copy-intent' && r.messageId === id);
      return found.length > 0 ? found : undefined;
    });
    expect(intents[0]!.client).toBe('127.0.0.3');
  });
});

describe('per-address limits behind HAProxy', () => {
  it('count the address the proxy reports: a second session from 127.0.0.2 is refused, one from 127.0.0.3 is not', async () => {
    const { haproxy } = await relayBehindHaproxy({ proxyProtocol: true, maxClientsPerAddress: 1 });
    const first = await open(haproxy.v2Port, '127.0.0.2');
    expect(await first.reply()).toMatch(/^220 /);
    const second = await open(haproxy.v2Port, '127.0.0.2');
    expect(await second.reply()).toBe('421 4.7.0 Too many connections from [127.0.0.2], try again later');
    const other = await open(haproxy.v1Port, '127.0.0.3');
    expect(await other.reply()).toMatch(/^220 /);
    expect(await other.cmd('EHLO mx.partner.example.net')).toMatch(/^250/);
    expect(await first.cmd('EHLO mx.partner.example.net')).toMatch(/^250/);
  });
});

describe('relay behind HAProxy without proxyProtocol', () => {
  it('sees the proxy, not the client: acceptFrom refuses 127.0.0.1 (what proxyProtocol fixes)', async () => {
    const { haproxy } = await relayBehindHaproxy({ proxyProtocol: false });
    const res = await swaks({ port: haproxy.v1Port, to: 'alice@corp.example.com', extra: ['--local-interface', '127.0.0.2'] });
    expect(res.replies.join('\n')).toMatch(/^554 5\.7\.1 Client host \[127\.0\.0\.1\] not allowed/m);
  });
});
