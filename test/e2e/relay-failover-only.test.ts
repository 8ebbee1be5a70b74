// FailoverOnly means what it says: a recipient that a working Exchange (here
// Postfix, answering RCPT TO with 452 4.2.2 mailbox full for one mailbox)
// defers alone gets no copy in Gmail when messageDeadline passes, and the
// audit log says why (withheld); its co-recipient reaches the primary and gets
// no copy either. With spec.failover.copyRecipientDeferrals the same message
// is copied after the deadline (the control: the test can fail both ways).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { relayTestConfig, startSmtpSink, swaks, type SmtpSink } from '../harness/smtp-tools.js';
import { waitUntil } from '../harness/wait.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
let postfix: PostfixInstance;
let sink: SmtpSink;
let dir: string;
const relays: Relay[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-fo-'));
  postfix = await startPostfix({
    domains: ['corp.example.com', 'example.org'],
    recipients: ['alice@corp.example.com', 'full@corp.example.com'],
    deferRecipients: ['full@corp.example.com'],
  });
  sink = await startSmtpSink();
}, 60_000);

afterAll(async () => {
  for (const r of relays) await r.stop().catch(() => undefined);
  await sink?.stop();
  await postfix?.destroy();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

async function relayWith(name: string, copyRecipientDeferrals: boolean): Promise<Relay> {
  const relay = await startRelay(
    relayTestConfig({
      spool: join(dir, name),
      primaryPort: postfix.port,
      backupPort: sink.port,
      instance: name,
      spec: { mode: 'FailoverOnly', failover: { messageDeadline: '1m', copyRecipientDeferrals } },
    }),
    { log },
  );
  relays.push(relay);
  return relay;
}

const audit = async (r: Relay) =>
  (await readFile(join(r.config.paths.spool, 'audit.log'), 'utf8').catch(() => ''))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((a) => a.action !== 'genesis');

describe('FailoverOnly and a mailbox the primary defers alone (452)', () => {
  it('no copy after messageDeadline (withheld, audited with the reason); a copy with copyRecipientDeferrals', async () => {
    const strict = await relayWith('strict', false);
    const optIn = await relayWith('opt-in', true);
    const t0 = Date.now();
    for (const [r, id] of [[strict, 'full-strict@partner.example.net'], [optIn, 'full-optin@partner.example.net']] as const) {
      expect((await swaks({ port: r.smtpPort, to: ['alice@corp.example.com', 'full@corp.example.com'], headers: [`Message-ID: <${id}>`] })).code).toBe(0);
    }
    await postfix.waitFor((m) => ['full-strict', 'full-optin'].every((id) => m.some((x) => x.messageId === `${id}@partner.example.net` && x.mailbox === 'alice@corp.example.com')), 30_000, 'alice has both');
    const st = [...strict.scheduler.states()][0]!;
    expect(st.deliveries.primary!.recipients['full@corp.example.com']).toMatchObject({ status: 'pending', recipientDeferral: true, detail: expect.stringMatching(/^452 4\.2\.2 .*mailbox full/) });

    // The control: with the opt-in the deferred recipient is copied once the deadline passes.
    await waitUntil('the opt-in copy after the deadline', 120_000, async () => (await sink.messageIds()).includes('full-optin@partner.example.net'));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(60_000);
    await waitUntil('the strict relay decided', 10_000, async () => (await audit(strict)).some((a) => a.action === 'withheld'));
    // A few sweeps later still nothing: the decision holds, audited once.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await sink.messageIds()).not.toContain('full-strict@partner.example.net');
    expect(await sink.dump()).toMatch(/X-Rcpt-Args: <full@corp\.example\.org>/);
    expect((await audit(strict)).map((a) => [a.action, a.to, a.reason])).toEqual([
      ['withheld', ['full@corp.example.com'], expect.stringMatching(/^message-deadline passed but the primary answers and defers only this recipient .*copyRecipientDeferrals is false$/)],
    ]);
    expect((await audit(optIn)).filter((a) => a.action === 'copy-intent').map((a) => [a.to, a.reason])).toEqual([[['full@corp.example.com'], 'message-deadline']]);
    expect(strict.scheduler.queueDepth('primary')).toBe(1);
    expect(strict.scheduler.queueDepth('backup')).toBe(0);
  }, 180_000);
});
