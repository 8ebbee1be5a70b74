// End to end: the relay in front of a real Postfix (the Exchange stand-in),
// with an smtp-sink as the backup (method SmtpRelay). Modes, exclusions,
// the audit log, the admin endpoint and an outage of the primary.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { relayTestConfig, startSmtpSink, swaks, type SmtpSink } from '../harness/smtp-tools.js';
import { maildirArrivalMs, steadyRate } from '../harness/arrivals.js';
import { waitUntil } from '../harness/wait.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });

async function auditLines(relay: Relay): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(join(relay.config.paths.spool, 'audit.log'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

let postfix: PostfixInstance;
let sink: SmtpSink;
let dir: string;
const relays: Relay[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-e2e-'));
  postfix = await startPostfix({
    domains: ['corp.example.com', 'example.org'],
    recipients: ['alice@corp.example.com', 'bob@corp.example.com'],
    rejectRecipients: ['gone@corp.example.com'],
  });
  sink = await startSmtpSink();
}, 60_000);

afterAll(async () => {
  for (const r of relays) await r.stop().catch(() => undefined);
  await sink?.stop();
  await postfix?.destroy();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

async function relayWith(name: string, spec: Parameters<typeof relayTestConfig>[0]['spec'], extra: Partial<Parameters<typeof relayTestConfig>[0]> = {}): Promise<Relay> {
  const relay = await startRelay(
    relayTestConfig({ spool: join(dir, name), primaryPort: postfix.port, backupPort: sink.port, instance: name, spec, ...extra }),
    { log },
  );
  relays.push(relay);
  return relay;
}

describe('relay delivery to Postfix', () => {
  it('FailoverOnly: delivers to the primary only, with a Received header, and empties the spool', async () => {
    const relay = await relayWith('failover-only', { mode: 'FailoverOnly' });
    const r = await swaks({ port: relay.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <fo-1@partner.example.net>'] });
    expect(r.code).toBe(0);
    expect(r.replies.at(-2)).toMatch(/^250 2\.0\.0 Ok: queued as [0-9a-f]+/);
    const msgs = await postfix.waitFor((m) => m.some((x) => x.messageId === 'fo-1@partner.example.net'), 30_000, 'fo-1 at postfix');
    const got = msgs.filter((x) => x.messageId === 'fo-1@partner.example.net');
    expect(got).toHaveLength(1);
    expect(got[0]!.mailbox).toBe('alice@corp.example.com');
    expect(got[0]!.raw).toMatch(/Received: from mx\.partner\.example\.net \(unknown \[127\.0\.0\.1\]\)\s+by relay\.test \(mail-continuity-relay\)/);
    await waitUntil('spool empty', 20_000, () => relay.scheduler.size === 0);
    expect(await sink.messageIds()).not.toContain('fo-1@partner.example.net');
    expect(await auditLines(relay)).toEqual([]);
    const metrics = await relay.metrics.registry.metrics();
    expect(metrics).toMatch(/relay_deliveries_total\{instance="failover-only",destination="primary",outcome="delivered"\} 1/);
    expect(metrics).toMatch(/relay_messages_accepted_total\{instance="failover-only"\} 1/);
  }, 90_000);

  it('DualDelivery: primary and backup (address-mapped) get the message; an exclusion keeps confidential mail from the backup; both audited', async () => {
    const relay = await relayWith('dual', {
      mode: 'DualDelivery',
      policy: { exclude: [{ name: 'confidential', header: { name: 'Sensitivity', value: 'company-confidential' } }, { name: 'hr', sender: '*@hr.partner.example.net' }] },
    });
    const a = await swaks({ port: relay.smtpPort, to: 'bob@corp.example.com', headers: ['Message-ID: <dual-1@partner.example.net>'] });
    const b = await swaks({ port: relay.smtpPort, to: 'bob@corp.example.com', headers: ['Message-ID: <dual-conf@partner.example.net>', 'Sensitivity: Company-Confidential'] });
    const c = await swaks({ port: relay.smtpPort, from: 'boss@HR.partner.example.net', to: 'alice@corp.example.com', headers: ['Message-ID: <dual-hr@partner.example.net>'] });
    expect([a.code, b.code, c.code]).toEqual([0, 0, 0]);
    await postfix.waitFor((m) => ['dual-1', 'dual-conf', 'dual-hr'].every((id) => m.some((x) => x.messageId === `${id}@partner.example.net`)), 30_000, 'three at postfix');
    await waitUntil('spool empty', 30_000, () => relay.scheduler.size === 0);
    const ids = await sink.messageIds();
    expect(ids.filter((i) => i === 'dual-1@partner.example.net')).toHaveLength(1);
    expect(ids).not.toContain('dual-conf@partner.example.net');
    expect(ids).not.toContain('dual-hr@partner.example.net');
    expect(await sink.dump()).toMatch(/X-Rcpt-Args: <bob@corp\.example\.org>/);
    const audit = await auditLines(relay);
    const byMid = (mid: string) => audit.filter((l) => l.messageId === mid);
    expect(byMid('dual-1@partner.example.net')).toEqual([
      expect.objectContaining({ action: 'copy-intent', to: ['bob@corp.example.com'] }),
      expect.objectContaining({ action: 'copied-to-backup', destination: 'backup', to: ['bob@corp.example.com'], instance: 'dual', rule: null, from: 'sender@partner.example.net' }),
    ]);
    expect(byMid('dual-1@partner.example.net')[1]!.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(byMid('dual-conf@partner.example.net')).toEqual([expect.objectContaining({ action: 'excluded', rule: 'confidential' })]);
    expect(byMid('dual-hr@partner.example.net')).toEqual([expect.objectContaining({ action: 'excluded', rule: 'hr' })]);
  }, 90_000);

  it('FailoverOnly with failover set through the admin endpoint: 401 without the token, then copies to the backup', async () => {
    const tokenFile = join(dir, 'admin-token');
    await writeFile(tokenFile, 's3cret-token\n');
    const relay = await relayWith('admin', { mode: 'FailoverOnly' }, { paths: { adminToken: tokenFile } });
    const url = `http://127.0.0.1:${relay.httpPort}/admin/failover`;
    const put = (body: unknown, token?: string) =>
      fetch(url, { method: 'PUT', body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) } });
    expect((await put({ active: true })).status).toBe(401);
    expect((await put({ active: true }, 's3cret-tokem')).status).toBe(401);
    expect((await put({ active: 'yes' }, 's3cret-token')).status).toBe(400);
    const ok = await put({ active: true }, 's3cret-token');
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual(expect.objectContaining({ active: true, replayMaxMessagesPerSecond: 20 }));
    expect(relay.failover.isActive).toBe(true);

    const r = await swaks({ port: relay.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <fo-active@partner.example.net>'] });
    expect(r.code).toBe(0);
    await sink.waitForCount(1, 1); // sink already has messages from the previous test; wait on the id instead
    await waitUntil('copy at the backup', 30_000, async () => (await sink.messageIds()).includes('fo-active@partner.example.net'));
    await postfix.waitFor((m) => m.some((x) => x.messageId === 'fo-active@partner.example.net'), 30_000, 'fo-active at postfix');
    await waitUntil('spool empty', 30_000, () => relay.scheduler.size === 0);
    expect((await auditLines(relay)).filter((l) => l.messageId === 'fo-active@partner.example.net')).toEqual([expect.objectContaining({ action: 'copy-intent' }), expect.objectContaining({ action: 'copied-to-backup' })]);
    expect((await put({ active: false }, 's3cret-token')).status).toBe(200);
    const health = await fetch(`http://127.0.0.1:${relay.httpPort}/healthz`);
    expect(health.status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${relay.httpPort}/readyz`)).status).toBe(200);
  }, 90_000);

  it('primary outage: mail is deferred and spooled, then delivered exactly once when Postfix is back', async () => {
    const relay = await relayWith('outage', { mode: 'FailoverOnly' });
    await postfix.stop();
    try {
      for (let i = 0; i < 5; i++) {
        const r = await swaks({ port: relay.smtpPort, to: 'bob@corp.example.com', headers: [`Message-ID: <outage-${i}@partner.example.net>`] });
        expect(r.code).toBe(0);
      }
      await waitUntil('deferrals', 30_000, async () => /relay_deliveries_total\{instance="outage",destination="primary",outcome="deferred"\} ([5-9]|\d\d)/.test(await relay.metrics.registry.metrics()));
      expect(relay.scheduler.queueDepth('primary')).toBe(5);
      // A human can list the queue while the primary is down.
      const cli = execFileSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'queue', 'list', '--spool', relay.config.paths.spool], {
        cwd: join(import.meta.dirname, '..', '..'),
        env: { ...process.env, NODE_OPTIONS: '' },
      }).toString();
      expect(cli).toContain('-- 5 message(s) in');
      expect(cli).toMatch(/primary: 1 pending \(attempts [1-9]/);
      expect(cli).toContain('<outage-0@partner.example.net>');
    } finally {
      await postfix.start();
    }
    await waitUntil('spool empty', 60_000, () => relay.scheduler.size === 0);
    // Postfix said 250 to the relay; its own local delivery into the Maildir follows a moment later.
    await postfix.waitFor((m) => Array.from({ length: 5 }, (_, i) => `outage-${i}@partner.example.net`).every((id) => m.some((x) => x.messageId === id)), 30_000, 'outage messages in Maildirs');
    const counts = await postfix.countByMessageId();
    for (let i = 0; i < 5; i++) expect(counts.get(`outage-${i}@partner.example.net`)).toBe(1);
  }, 120_000);

  it('a permanent refusal by the primary (5xx) becomes a dead-letter record; the other recipient is delivered', async () => {
    const relay = await relayWith('dead', { mode: 'FailoverOnly' });
    const r = await swaks({ port: relay.smtpPort, to: ['gone@corp.example.com', 'alice@corp.example.com'], headers: ['Message-ID: <dead-1@partner.example.net>'] });
    expect(r.code).toBe(0);
    const deadDir = join(relay.config.paths.spool, 'dead');
    await waitUntil('dead letter', 30_000, async () => (await readdir(deadDir).catch(() => [])).some((f) => f.endsWith('.json')));
    const file = (await readdir(deadDir)).find((f) => f.endsWith('.json'))!;
    const state = JSON.parse(await readFile(join(deadDir, file), 'utf8')) as { deliveries: { primary: { recipients: Record<string, { status: string; detail: string }> } }; dead: { reason: string } };
    expect(state.deliveries.primary.recipients['gone@corp.example.com']).toEqual(expect.objectContaining({ status: 'failed', detail: expect.stringMatching(/^5\d\d .*no such user here/) }));
    expect(state.deliveries.primary.recipients['alice@corp.example.com']!.status).toBe('delivered');
    expect(await readdir(deadDir)).toContain(file.replace('.json', '.eml'));
    const msgs = await postfix.messages();
    expect(msgs.filter((m) => m.messageId === 'dead-1@partner.example.net').map((m) => m.recipient)).toEqual(['alice@corp.example.com']);
    expect(await relay.metrics.registry.metrics()).toMatch(/relay_dead_lettered_total\{instance="dead",reason="rejected"\} 1/);
  }, 60_000);

  it('FailoverOnly without the operator: a message the primary has not taken within messageDeadline (1m) goes to the backup, then to the primary when it is back', async () => {
    const relay = await relayWith('deadline', { mode: 'FailoverOnly', failover: { messageDeadline: '1m' } });
    await postfix.stop();
    let t0 = 0;
    try {
      t0 = Date.now();
      const r = await swaks({ port: relay.smtpPort, to: 'bob@corp.example.com', headers: ['Message-ID: <deadline-1@partner.example.net>'] });
      expect(r.code).toBe(0);
      await waitUntil('backup copy after the deadline', 120_000, async () => (await sink.messageIds()).includes('deadline-1@partner.example.net'));
      expect(Date.now() - t0).toBeGreaterThanOrEqual(60_000);
      expect(await sink.dump()).toMatch(/X-Rcpt-Args: <bob@corp\.example\.org>/);
      await waitUntil('audit line', 10_000, async () => (await auditLines(relay)).some((l) => l.messageId === 'deadline-1@partner.example.net'));
      expect((await auditLines(relay)).filter((l) => l.messageId === 'deadline-1@partner.example.net')).toEqual([expect.objectContaining({ action: 'copy-intent' }), expect.objectContaining({ action: 'copied-to-backup' })]);
      expect(relay.scheduler.queueDepth('primary')).toBe(1);
    } finally {
      await postfix.start();
    }
    await waitUntil('spool empty', 60_000, () => relay.scheduler.size === 0);
    await postfix.waitFor((m) => m.some((x) => x.messageId === 'deadline-1@partner.example.net'), 30_000, 'deadline-1 in a Maildir');
    expect((await postfix.countByMessageId()).get('deadline-1@partner.example.net')).toBe(1);
    expect((await sink.messageIds()).filter((i) => i === 'deadline-1@partner.example.net')).toHaveLength(1);
  }, 240_000);

  it('failover through the admin endpoint during an outage: copies go to the backup; when it ends, the backlog is replayed to Postfix at the given rate', async () => {
    const tokenFile = join(dir, 'admin-token-replay');
    await writeFile(tokenFile, 'replay-token');
    // Long backoff: deferred mail waits for the replay instead of retrying on its own.
    const relay = await relayWith('replay', { mode: 'FailoverOnly' }, { paths: { adminToken: tokenFile }, tuning: { minBackoffMs: 600_000, maxBackoffMs: 600_000, sweepIntervalMs: 200, spoolMinFreeBytes: 0 } });
    const put = (body: unknown) =>
      fetch(`http://127.0.0.1:${relay.httpPort}/admin/failover`, { method: 'PUT', body: JSON.stringify(body), headers: { authorization: 'Bearer replay-token' } });
    await postfix.stop();
    const ids = Array.from({ length: 10 }, (_, i) => `replay-${i}@partner.example.net`);
    try {
      expect((await put({ active: true })).status).toBe(200);
      for (const id of ids) expect((await swaks({ port: relay.smtpPort, to: 'alice@corp.example.com', headers: [`Message-ID: <${id}>`] })).code).toBe(0);
      await waitUntil('ten copies at the backup', 30_000, async () => {
        const got = new Set(await sink.messageIds());
        return ids.every((id) => got.has(id));
      });
      // Five refused attempts in a row: the primary counts as down (one probe at a time from then on).
      await waitUntil('primary down', 30_000, () => relay.scheduler.isDown('primary'));
    } finally {
      await postfix.start();
    }
    const t0 = Date.now();
    expect((await put({ active: false, maxMessagesPerSecond: 2 })).status).toBe(200);
    await waitUntil('replayed', 60_000, () => relay.scheduler.size === 0);
    const elapsed = Date.now() - t0;
    const msgs = await postfix.waitFor((m) => ids.every((id) => m.some((x) => x.messageId === id)), 30_000, 'replayed messages in Maildirs');
    const counts = await postfix.countByMessageId();
    for (const id of ids) expect(counts.get(id)).toBe(1);
    // 10 messages at 2/s with a burst of 2: the last cannot start before ~4 s.
    expect(elapsed).toBeGreaterThanOrEqual(3500);
    // After the burst, 2/s within 10 %, from Postfix's delivery times (Maildir names): a bucket at half the rate fails.
    const times = await Promise.all(msgs.filter((m) => ids.includes(m.messageId ?? '')).map((m) => maildirArrivalMs(m.file)));
    expect(Math.abs(steadyRate(times, 2)! - 2) / 2).toBeLessThanOrEqual(0.1);
    expect((await auditLines(relay)).filter((l) => ids.includes(String(l.messageId)) && l.action === 'copied-to-backup')).toHaveLength(10);
  }, 120_000);
});
