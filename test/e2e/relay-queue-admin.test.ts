// The queue on a running relay's admin API (Postfix's postqueue/postsuper over
// HTTP with the relay's bearer token), with Postfix as Exchange and the Gmail
// emulator: during an outage (Postfix stopped, FailoverOnly), a held message
// stays out of Gmail when the failover starts while the others go; the hold
// survives a relay restart; release sends it; retry and flush make waiting
// mail go now; delete moves one to dead/; every change is in the audit log
// with who asked and why; without the token: 401.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { RelayConfig } from '../../src/api/relay/config.js';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { gmailRelayConfig, startGmailRelayParts, type GmailRelayParts } from '../harness/gmail-relay-config.js';
import { swaks } from '../harness/smtp-tools.js';
import { waitFor } from '../harness/wait.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
const TOKEN = 'queue-admin-test-token';
const ALICE = 'alice@corp.example.com';
const MAILBOX = 'alice@corp.example.org';
let parts: GmailRelayParts;
let relay: Relay | undefined;
let config: RelayConfig;

interface Item {
  id: string;
  messageId: string | null;
  state: string;
  hold?: { reason?: string };
  destinations: Record<string, { pending: string[]; attempts: number; nextAttemptAt: string }>;
}

async function api(method: string, path: string, body?: unknown, token = TOKEN) {
  const res = await fetch(`http://127.0.0.1:${relay!.httpPort}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'x-mail-continuity-actor': 'jane@corp.example.com', 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
const list = async (query = '') => (await api('GET', `/admin/queue${query}`)).body.items as Item[];
const idOf = async (messageId: string) => (await list()).find((i) => i.messageId === messageId)!.id;
const inGmail = (messageId: string) => parts.emu.messages(MAILBOX).filter((m) => m.rfc822MessageId === messageId).length;

beforeAll(async () => {
  parts = await startGmailRelayParts('relay-queue-admin-', [MAILBOX]);
  const base = await gmailRelayConfig({ dir: parts.dir, emu: parts.emu, primaryPort: parts.postfix.port, instance: 'queue-admin-e2e', exclude: [] });
  await writeFile(join(parts.dir, 'admin-token'), TOKEN, { mode: 0o600 });
  config = RelayConfig.parse({
    ...base,
    spec: { ...base.spec, mode: 'FailoverOnly', failover: { ...base.spec.failover, messageDeadline: '15m' } },
    paths: { ...base.paths, adminToken: join(parts.dir, 'admin-token') },
  });
  await parts.postfix.stop();
  relay = await startRelay(config, { log });
}, 60_000);

afterAll(() => parts?.close(relay), 60_000);

describe('the queue on the admin API', () => {
  it('refuses a request without the token', async () => {
    expect((await api('GET', '/admin/queue', undefined, 'wrong')).status).toBe(401);
  });

  it('hold keeps a message out of Gmail through a failover and a restart; release sends it', async () => {
    for (const id of ['qa-held@partner.example.net', 'qa-free@partner.example.net', 'qa-delete@partner.example.net']) {
      expect((await swaks({ port: relay!.smtpPort, to: ALICE, headers: [`Message-ID: <${id}>`] })).code).toBe(0);
    }
    await waitFor('three messages deferred (Exchange down)', async () => (await list('?state=deferred')).length === 3, 30_000);
    const held = await idOf('qa-held@partner.example.net');
    const h = await api('POST', `/admin/queue/${held}/hold`, { reason: 'suspected phishing' });
    expect(h).toMatchObject({ status: 200, body: { changed: true, state: 'held', hold: { reason: 'suspected phishing' } } });
    expect((await api('POST', `/admin/queue/${held}/hold`, {})).body.changed).toBe(false);
    expect((await list('?state=held')).map((i) => i.messageId)).toEqual(['qa-held@partner.example.net']);
    expect((await list(`?recipient=${ALICE}&destination=primary`)).length).toBe(3);
    expect((await api('GET', '/admin/queue?state=stuck')).body.error).toBe('state=stuck: use held, deferred or active');

    // The outage becomes a failover: everything waiting goes to Gmail, except the held message.
    relay!.failover.set({ active: true });
    await waitFor('the others in Gmail', () => inGmail('qa-free@partner.example.net') === 1 && inGmail('qa-delete@partner.example.net') === 1, 30_000);
    await new Promise((r) => setTimeout(r, 1500)); // several sweeps and retries: still not there
    expect(inGmail('qa-held@partner.example.net')).toBe(0);

    // The hold is in the spool's journal: a restarted relay keeps it.
    await relay!.stop();
    relay = await startRelay(config, { log });
    relay.failover.set({ active: true });
    expect((await api('GET', `/admin/queue/${held}`)).body).toMatchObject({ state: 'held', messageId: 'qa-held@partner.example.net' });
    await new Promise((r) => setTimeout(r, 1000));
    expect(inGmail('qa-held@partner.example.net')).toBe(0);

    expect((await api('POST', `/admin/queue/${held}/release`, { reason: 'checked: genuine' })).body).toMatchObject({ changed: true, state: 'deferred' });
    await waitFor('the released message in Gmail', () => inGmail('qa-held@partner.example.net') === 1, 30_000);
  }, 120_000);

  it('delete moves a message to dead/; retry and flush send the rest to Exchange at once', async () => {
    const del = await idOf('qa-delete@partner.example.net');
    expect((await api('DELETE', `/admin/queue/${del}`, { reason: 'sent twice' })).status).toBe(200);
    expect((await api('GET', `/admin/queue/${del}`)).status).toBe(404);
    expect(await readdir(join(config.paths.spool, 'dead'))).toEqual(expect.arrayContaining([`${del}.json`, `${del}.eml`]));
    const dead = JSON.parse(await readFile(join(config.paths.spool, 'dead', `${del}.json`), 'utf8')) as { dead: { reason: string } };
    expect(dead.dead.reason).toBe('deleted by jane@corp.example.com through the admin API: sent twice');

    // Exchange is back; the retries wait their backoff (up to 2 s here): retry one, flush the rest.
    await parts.postfix.start();
    const free = await idOf('qa-free@partner.example.net');
    expect((await api('POST', `/admin/queue/${free}/retry`)).status).toBe(200);
    expect((await api('POST', '/admin/queue/flush')).status).toBe(200);
    await parts.postfix.waitFor((m) => ['qa-free', 'qa-held'].every((id) => m.some((x) => x.messageId === `${id}@partner.example.net`)), 30_000, 'both at Postfix');
    await waitFor('the queue empty', async () => (await list()).length === 0, 30_000);
    expect((await parts.postfix.countByMessageId()).get('qa-delete@partner.example.net')).toBeUndefined();
    expect(inGmail('qa-delete@partner.example.net')).toBe(1); // it had left for Gmail before the delete

    const audit = (await readFile(join(config.paths.spool, 'audit.log'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { action: string; messageId: string; reason: string | null });
    const admin = audit.filter((a) => ['held', 'released', 'retried', 'deleted'].includes(a.action)).map((a) => `${a.action} ${a.messageId} ${a.reason}`);
    expect(admin).toEqual([
      'held qa-held@partner.example.net admin jane@corp.example.com: suspected phishing',
      'released qa-held@partner.example.net admin jane@corp.example.com: checked: genuine',
      'deleted qa-delete@partner.example.net admin jane@corp.example.com: sent twice',
      'retried qa-free@partner.example.net admin jane@corp.example.com',
    ]);
    expect(audit.some((a) => a.action === 'copied-to-backup' && a.messageId === 'qa-held@partner.example.net')).toBe(true);
  }, 120_000);
});
