// A relay told to drain before a scale-down removes it: /readyz answers 503
// with what it still holds, MAIL on a session already open gets 421 4.3.2, it
// goes on delivering its spool, and its admin snapshot says so. Real SMTP and
// HTTP sockets; the primary is a scripted transport that defers until released.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import type { RecipientOutcome, SpooledMessage, Transport } from '../../src/relay/types.js';
import { RawSmtp, relayTestConfig, swaks } from '../harness/smtp-tools.js';
import { waitUntil } from '../harness/wait.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
const TOKEN = 'drain-token';

/** Exchange down until `up` is set; counts the messages it took. */
class ScriptedPrimary implements Transport {
  readonly destination = 'primary' as const;
  up = false;
  readonly delivered: string[] = [];
  async deliver(message: SpooledMessage, recipients: string[]): Promise<RecipientOutcome[]> {
    if (!this.up) return recipients.map((recipient) => ({ recipient, status: 'deferred', detail: '421 4.3.2 down for the test' }));
    this.delivered.push(message.messageId ?? message.id);
    return recipients.map((recipient) => ({ recipient, status: 'delivered', detail: '250 ok' }));
  }
  async close(): Promise<void> {}
}

let dir: string;
let relay: Relay;
const primary = new ScriptedPrimary();
const backup: Transport = { destination: 'backup', deliver: async (_m, r) => r.map((recipient) => ({ recipient, status: 'delivered', detail: '250 ok' })), close: async () => {} };

async function admin(body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${relay.httpPort}/admin/failover`, {
    method: body ? 'PUT' : 'GET',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

async function readyz(): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${relay.httpPort}/readyz`);
  return { status: res.status, text: await res.text() };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-drain-'));
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, TOKEN);
  relay = await startRelay(
    relayTestConfig({ spool: join(dir, 'spool'), primaryPort: 9, instance: 'drain', spec: { mode: 'FailoverOnly' }, paths: { adminToken: tokenFile } }),
    { log, transports: { primary, backup } },
  );
}, 30_000);

afterAll(async () => {
  await relay?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('a draining relay', () => {
  it('answers /readyz 503, refuses MAIL with 421 4.3.2, keeps delivering, and reports the drain', async () => {
    for (const n of [1, 2]) {
      const r = await swaks({ port: relay.smtpPort, to: 'alice@corp.example.com', headers: [`Message-ID: <drain-${n}@partner.example.net>`] });
      expect(r.code).toBe(0);
    }
    expect(await readyz()).toEqual({ status: 200, text: 'ok\n' });
    // A sender's session open before the drain starts.
    const open = await RawSmtp.open(relay.smtpPort);
    expect(await open.reply()).toMatch(/^220 /);
    expect(await open.cmd('EHLO mx.partner.example.net')).toMatch(/^250/);

    const snap = await admin({ active: false, draining: true });
    expect(snap).toMatchObject({ draining: true, queuedPrimary: 2, queuedBackup: 0, smtpSessions: 1 });
    expect(await readyz()).toEqual({ status: 503, text: 'not ready: draining: 2 messages still queued\n' });
    expect(await open.cmd('MAIL FROM:<late@partner.example.net>')).toMatch(/^421 4\.3\.2 This relay is draining/);
    await open.waitClosed();
    const late = await swaks({ port: relay.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <drain-late@partner.example.net>'] });
    expect(late.replies.some((l) => l.startsWith('421 4.3.2'))).toBe(true);

    // Exchange comes back: the draining relay delivers what it holds, and only that.
    primary.up = true;
    await waitUntil('spool delivered', 20_000, () => relay.scheduler.size === 0);
    expect(primary.delivered.sort()).toEqual(['drain-1@partner.example.net', 'drain-2@partner.example.net']);
    expect(await admin()).toMatchObject({ draining: true, queuedPrimary: 0, queuedBackup: 0, smtpSessions: 0 });
    expect(await readyz()).toEqual({ status: 503, text: 'not ready: draining: 0 messages still queued\n' });
    expect(await relay.metrics.registry.metrics()).toMatch(/relay_smtp_rejected_total\{instance="drain",reason="draining"\} 2/);

    // The scale-down is cancelled: it takes mail again.
    expect(await admin({ active: false, draining: false })).toMatchObject({ draining: false });
    expect(await readyz()).toEqual({ status: 200, text: 'ok\n' });
    const again = await swaks({ port: relay.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <drain-3@partner.example.net>'] });
    expect(again.code).toBe(0);
  }, 60_000);
});
