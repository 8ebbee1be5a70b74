// The scheduler against a real spool directory and scripted transports:
// deferral and backoff, retryAfterMs, 5xx dead letters, FailoverOnly deadline
// and failover, paced replay, retention, in-flight recovery.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { AuditLog } from '../../src/relay/audit/log.js';
import { FailoverState } from '../../src/relay/control/failover-state.js';
import { createMetrics, type RelayMetrics } from '../../src/relay/metrics.js';
import { backoffMs } from '../../src/lib/backoff.js';
import { isSessionFailure } from '../../src/relay/scheduler/destination-health.js';
import { Scheduler } from '../../src/relay/scheduler/scheduler.js';
import { Spool } from '../../src/relay/spool/spool.js';
import type { MessageState } from '../../src/relay/spool/state.js';
import type { Destination, RecipientOutcome, SpooledMessage, Transport } from '../../src/relay/types.js';
import { relayTestConfig } from '../harness/smtp-tools.js';

const log = pino({ level: 'silent' });

type Script = (m: SpooledMessage, rcpts: string[], call: number) => RecipientOutcome[] | Promise<RecipientOutcome[]>;

class FakeTransport implements Transport {
  alreadyDelivered?: (m: SpooledMessage, r: string) => Promise<boolean>;
  calls: Array<{ at: number; id: string; rcpts: string[] }> = [];
  constructor(readonly destination: Destination, public script: Script) {}
  async deliver(m: SpooledMessage, rcpts: string[]): Promise<RecipientOutcome[]> {
    this.calls.push({ at: Date.now(), id: m.id, rcpts });
    return this.script(m, rcpts, this.calls.length);
  }
  async close() {}
}

const ok: Script = (_m, rcpts) => rcpts.map((r) => ({ recipient: r, status: 'delivered', detail: '250 ok' }));
const defer: Script = (_m, rcpts) => rcpts.map((r) => ({ recipient: r, status: 'deferred', detail: '421 4.3.2 try later' }));
const refused: Script = (_m, rcpts) => rcpts.map((r) => ({ recipient: r, status: 'deferred', detail: 'connect ECONNREFUSED 127.0.0.1:25' }));

let dir: string;
let offset = 0;
let parts: { spool: Spool; scheduler: Scheduler; primary: FakeTransport; backup: FakeTransport; failover: FailoverState; metrics: RelayMetrics; audit: AuditLog };

async function setup(spec: Parameters<typeof relayTestConfig>[0]['spec'], primary: Script, backup: Script = ok, tuning: Parameters<typeof relayTestConfig>[0]['tuning'] = {}, auditPath = join(dir, 'audit.log')) {
  const config = relayTestConfig({ spool: join(dir, 'spool'), primaryPort: 25, spec, tuning: { minBackoffMs: 20, maxBackoffMs: 100, sweepIntervalMs: 60_000, ...tuning } });
  const spool = new Spool(config.paths.spool, { log });
  await spool.init();
  const audit = new AuditLog(auditPath, 'unit', log);
  await audit.open();
  const metrics = createMetrics();
  const failover = new FailoverState({ active: false, replayMaxMessagesPerSecond: config.spec.recovery.maxMessagesPerSecond });
  const p = new FakeTransport('primary', primary);
  const b = new FakeTransport('backup', backup);
  const scheduler = new Scheduler({ config, spool, transports: { primary: p, backup: b }, audit, metrics, failover, log, now: () => Date.now() + offset });
  scheduler.start();
  parts = { spool, scheduler, primary: p, backup: b, failover, metrics, audit };
  return parts;
}

async function put(rcpts = ['a@corp.example.com'], extra: Partial<MessageState> = {}): Promise<MessageState> {
  const w = await parts.spool.create();
  await w.write(Buffer.from('Subject: t\r\n\r\nx\r\n'));
  const { state } = await w.commit({
    mailFrom: 's@partner.example.net',
    rcptTo: rcpts,
    messageId: `${w.id}@test`,
    receivedAt: Date.now() + offset,
    client: { address: '127.0.0.1', helo: 'x' },
    headers: [],
    deliveries: { primary: { recipients: Object.fromEntries(rcpts.map((r) => [r, { status: 'pending' as const }])), attempts: 0, nextAttemptAt: 0 } },
    ...extra,
  });
  return state;
}

async function until(what: string, f: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const auditLines = async () => (await readFile(join(dir, 'audit.log'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).filter((a) => a.action !== 'genesis');

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-sched-'));
  offset = 0;
});
afterEach(async () => {
  await parts?.scheduler.stop(2000);
  await parts?.audit.close();
  await parts?.spool.close();
  await rm(dir, { recursive: true, force: true });
});

describe('backoff', () => {
  it('grows exponentially with equal jitter, capped', () => {
    expect(backoffMs(1, 1000, 60_000, () => 0)).toBe(500);
    expect(backoffMs(1, 1000, 60_000, () => 1)).toBe(1000);
    expect(backoffMs(3, 1000, 60_000, () => 1)).toBe(4000);
    expect(backoffMs(30, 1000, 60_000, () => 1)).toBe(60_000);
    expect(backoffMs(30, 1000, 60_000, () => 0)).toBe(30_000);
  });
});

describe('scheduler', () => {
  it('retries a deferral and removes the message once delivered', async () => {
    await setup({ mode: 'FailoverOnly' }, (m, r, call) => (call < 3 ? defer(m, r, call) : ok(m, r, call)));
    const st = await put();
    parts.scheduler.add(st);
    await until('removed', async () => parts.scheduler.size === 0 && (await readdir(join(dir, 'spool', 'queue'))).length === 0);
    expect(parts.primary.calls).toHaveLength(3);
    expect(parts.backup.calls).toHaveLength(0);
    const text = await parts.metrics.registry.metrics();
    expect(text).toMatch(/relay_deliveries_total\{instance="relay-test",destination="primary",outcome="deferred"\} 2/);
    expect(text).toMatch(/relay_deliveries_total\{instance="relay-test",destination="primary",outcome="delivered"\} 1/);
  });

  it('a message that waits is frozen (state as JSON, body out of memory); its retry reads the body from the spool file', async () => {
    const seen: Array<{ cached: boolean; bytes: string }> = [];
    await setup(
      { mode: 'FailoverOnly' },
      async (m, r, call) => {
        seen.push({ cached: m.body !== undefined, bytes: (m.body ?? (await readFile(m.path)).subarray(0, m.size)).toString() });
        return call === 1 ? defer(m, r, call) : ok(m, r, call);
      },
      ok,
      { minBackoffMs: 400, maxBackoffMs: 400 },
    );
    const w = await parts.spool.create();
    await w.write(Buffer.from('Subject: frozen\r\n\r\nbody\r\n'));
    const { state, message } = await w.commit({ mailFrom: 's@partner.example.net', rcptTo: ['a@corp.example.com'], receivedAt: Date.now(), client: { address: '127.0.0.1', helo: 'x' }, headers: [], deliveries: { primary: { recipients: { 'a@corp.example.com': { status: 'pending' } }, attempts: 0, nextAttemptAt: 0 } } });
    expect(message.body).toBeDefined();
    parts.scheduler.add(state, { message });
    await until('deferred and frozen', () => parts.scheduler.frozenCount === 1);
    expect(parts.spool.cachedBytes).toBe(0);
    expect(parts.scheduler.inspect(state.id)!.deliveries.primary!.attempts).toBe(1);
    await until('delivered', () => parts.scheduler.size === 0);
    expect(seen).toEqual([
      { cached: true, bytes: 'Subject: frozen\r\n\r\nbody\r\n' },
      { cached: false, bytes: 'Subject: frozen\r\n\r\nbody\r\n' },
    ]);
  });

  it('waits at least retryAfterMs from the transport', async () => {
    await setup({ mode: 'FailoverOnly' }, (m, r, call) => (call === 1 ? r.map((x) => ({ recipient: x, status: 'deferred', detail: '429', retryAfterMs: 400 })) : ok(m, r, call)));
    parts.scheduler.add(await put());
    await until('delivered', () => parts.scheduler.size === 0);
    expect(parts.primary.calls[1]!.at - parts.primary.calls[0]!.at).toBeGreaterThanOrEqual(390);
  });

  it('5xx: a dead-letter record per recipient; the message moves to dead/ once the others are done', async () => {
    await setup({ mode: 'FailoverOnly' }, (_m, r) => r.map((x) => (x.startsWith('gone') ? { recipient: x, status: 'failed', detail: '550 5.1.1 unknown' } : { recipient: x, status: 'delivered', detail: '250' })));
    const st = await put(['gone@corp.example.com', 'here@corp.example.com']);
    parts.scheduler.add(st);
    await until('dead', async () => (await readdir(join(dir, 'spool', 'dead'))).length === 2);
    const dead = JSON.parse(await readFile(join(dir, 'spool', 'dead', `${st.id}.json`), 'utf8')) as MessageState;
    expect(dead.deliveries.primary!.recipients['gone@corp.example.com']).toEqual(expect.objectContaining({ status: 'failed', detail: '550 5.1.1 unknown' }));
    expect(dead.deliveries.primary!.recipients['here@corp.example.com']!.status).toBe('delivered');
    expect(await parts.metrics.registry.metrics()).toMatch(/relay_dead_lettered_total\{instance="relay-test",reason="rejected"\} 1/);
    expect(await readdir(join(dir, 'spool', 'queue'))).toEqual([]);
  });

  it('FailoverOnly: once messageDeadline passes without the primary, a copy goes to the backup (audited); the primary keeps its retries', async () => {
    await setup({ mode: 'FailoverOnly', failover: { messageDeadline: '15m' } }, defer);
    const st = await put();
    parts.scheduler.add(st);
    await until('a primary attempt', () => parts.primary.calls.length >= 1);
    parts.scheduler.sweep();
    expect(parts.backup.calls).toHaveLength(0);
    offset = 15 * 60_000;
    parts.scheduler.sweep();
    await until('backup copy', () => parts.backup.calls.length === 1);
    await until('audit lines', async () => (await auditLines()).length === 2);
    // Write-ahead: the intent before the copy, the outcome after.
    expect(await auditLines()).toEqual([
      expect.objectContaining({ action: 'copy-intent', spoolId: st.id, to: ['a@corp.example.com'] }),
      expect.objectContaining({ action: 'copied-to-backup', spoolId: st.id, to: ['a@corp.example.com'] }),
    ]);
    expect(parts.scheduler.inspect(st.id)!.deliveries.backup!.recipients['a@corp.example.com']).toEqual(expect.objectContaining({ status: 'delivered' }));
    expect(parts.scheduler.queueDepth('primary')).toBe(1);
    expect(parts.scheduler.queueDepth('backup')).toBe(0);
  });

  it('failover active: new and waiting mail gets a backup copy; when it ends, the primary backlog is replayed at the set rate', async () => {
    let primaryUp = false;
    // Long backoff: after one attempt each message waits for its timer, until the replay flushes them.
    await setup({ mode: 'FailoverOnly' }, (m, r, c) => (primaryUp ? ok(m, r, c) : defer(m, r, c)), ok, { minBackoffMs: 600_000, maxBackoffMs: 600_000 });
    const waiting = await put();
    parts.scheduler.add(waiting);
    await until('primary tried', () => parts.primary.calls.length >= 1);
    parts.failover.set({ active: true });
    for (let i = 0; i < 5; i++) parts.scheduler.add(await put([`u${i}@corp.example.com`]));
    await until('six backup copies', () => parts.backup.calls.length === 6);
    // Five refusals in a row: the primary counts as down, the sixth message waits untried.
    await until('primary down', () => parts.primary.calls.length === 5 && parts.scheduler.isDown('primary'));
    expect(parts.scheduler.queueDepth('primary')).toBe(6);
    primaryUp = true;
    const before = parts.primary.calls.length;
    const t0 = Date.now();
    parts.failover.set({ active: false, maxMessagesPerSecond: 2 });
    expect(parts.scheduler.replayActive).toBe(true);
    await until('replayed', () => parts.scheduler.size === 0, 20_000);
    const replayed = parts.primary.calls.slice(before);
    expect(replayed).toHaveLength(6);
    // A bucket of 2 at 2/s: the sixth starts no earlier than ~2 s after the first.
    expect(replayed[5]!.at - t0).toBeGreaterThanOrEqual(1500);
    expect(parts.scheduler.replayActive).toBe(false);
  }, 30_000);

  it('failover active and the primary answers again before the operator ends it: deliveries are paced and counted as replayed', async () => {
    await setup({ mode: 'FailoverOnly' }, ok, ok);
    parts.failover.set({ active: true, maxMessagesPerSecond: 2 });
    const t0 = Date.now();
    for (let i = 0; i < 6; i++) parts.scheduler.add(await put([`p${i}@corp.example.com`]));
    await until('six at the primary', () => parts.primary.calls.length === 6, 20_000);
    // A bucket of 2 at 2/s: never the full concurrency of 10 at once.
    expect(parts.primary.calls[5]!.at - t0).toBeGreaterThanOrEqual(1500);
    expect(parts.failover.isActive).toBe(true);
    expect(parts.scheduler.facts()).toMatchObject({ messagesReplayed: 6, replaying: true });
    // The count belongs to this failover: its end does not reset it, a new one does.
    parts.failover.set({ active: false });
    expect(parts.scheduler.facts().messagesReplayed).toBe(6);
    parts.failover.set({ active: true });
    expect(parts.scheduler.facts().messagesReplayed).toBe(0);
  }, 30_000);

  it('DualDelivery with an exclusion: the excluded recipient never reaches the backup and is audited once', async () => {
    await setup({ mode: 'DualDelivery', policy: { exclude: [{ name: 'ceo', recipient: 'CEO@corp.example.com' }] } }, ok);
    const st = await put(['ceo@corp.example.com', 'bob@corp.example.com']);
    parts.scheduler.add(st);
    await until('done', () => parts.scheduler.size === 0);
    expect(parts.backup.calls.map((c) => c.rcpts)).toEqual([['bob@corp.example.com']]);
    await until('audit', async () => (await auditLines()).length === 3);
    const lines = await auditLines();
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ action: 'excluded', rule: 'ceo', to: ['ceo@corp.example.com'] }),
        expect.objectContaining({ action: 'copy-intent', to: ['bob@corp.example.com'] }),
        expect.objectContaining({ action: 'copied-to-backup', to: ['bob@corp.example.com'] }),
      ]),
    );
  });

  it('an audit log that cannot be written pauses copies to the backup (the gauge says so); the primary goes on', async () => {
    await setup({ mode: 'DualDelivery' }, ok, ok, {}, '/dev/full');
    const st = await put();
    parts.scheduler.add(st);
    await until('the primary has it', () => parts.scheduler.queueDepth('primary') === 0);
    await until('the copy deferred', () => parts.scheduler.inspect(st.id)?.deliveries.backup?.recipients['a@corp.example.com']?.status === 'pending' && (parts.scheduler.inspect(st.id)?.deliveries.backup?.attempts ?? 0) >= 1);
    expect(parts.backup.calls).toHaveLength(0);
    expect(parts.scheduler.inspect(st.id)!.deliveries.backup!.lastError).toMatch(/audit log cannot be written/);
    expect((await parts.metrics.registry.getSingleMetricAsString('relay_audit_write_failing'))).toMatch(/relay_audit_write_failing\{instance="[^"]*"\} 1/);
  });

  it('retention: mail older than spec.relay.spool.retention moves to dead/ with a log line and a metric', async () => {
    await setup({ mode: 'FailoverOnly', relay: { acceptFrom: ['127.0.0.0/8'], spool: { retention: '1h' } } }, defer);
    const st = await put();
    parts.scheduler.add(st);
    await until('tried', () => parts.primary.calls.length >= 1);
    offset = 2 * 3_600_000;
    await until('expired', async () => {
      parts.scheduler.sweep();
      return (await readdir(join(dir, 'spool', 'dead'))).length === 2;
    });
    const dead = JSON.parse(await readFile(join(dir, 'spool', 'dead', `${st.id}.json`), 'utf8')) as MessageState;
    expect(dead.dead?.reason).toBe('retention expired');
    expect(dead.deliveries.primary!.recipients['a@corp.example.com']!.status).toBe('failed');
    expect(await parts.metrics.registry.metrics()).toMatch(/relay_dead_lettered_total\{instance="relay-test",reason="retention"\} 1/);
  });

  it('recovery: an attempt in flight at a crash is retried and counted as a possible duplicate', async () => {
    await setup({ mode: 'FailoverOnly' }, ok);
    const st = await put();
    st.deliveries.primary!.inFlightSince = Date.now() - 1000;
    parts.scheduler.add(st, { recovered: true });
    await until('delivered', () => parts.scheduler.size === 0);
    expect(parts.primary.calls).toHaveLength(1);
    expect(await parts.metrics.registry.metrics()).toMatch(/relay_possible_duplicates_total\{instance="relay-test",destination="primary"\} 1/);
  });

  it('recovery: a transport that can tell (alreadyDelivered) avoids the duplicate', async () => {
    await setup({ mode: 'DualDelivery' }, ok);
    parts.backup.alreadyDelivered = async () => true;
    const st = await put();
    st.deliveries.backup = { recipients: { 'a@corp.example.com': { status: 'pending' } }, attempts: 1, nextAttemptAt: 0, inFlightSince: Date.now() };
    parts.scheduler.add(st, { recovered: true });
    await until('done', () => parts.scheduler.size === 0);
    expect(parts.backup.calls).toHaveLength(0);
    expect(await parts.metrics.registry.metrics()).not.toMatch(/relay_possible_duplicates_total\{[^}]*destination="backup"\} 1/);
  });

  it('a destination that is down is suspended after 5 session failures: one probe at a time, new mail does not count as backlog; it resumes when it answers', async () => {
    let up = false;
    await setup({ mode: 'FailoverOnly' }, (m, r, c) => (up ? ok(m, r, c) : refused(m, r, c)), ok, { minBackoffMs: 300, maxBackoffMs: 300 });
    for (let i = 0; i < 5; i++) parts.scheduler.add(await put([`u${i}@corp.example.com`]));
    await until('five refusals', () => parts.primary.calls.length >= 5);
    await until('down', () => parts.scheduler.isDown('primary'));
    const callsWhenDown = parts.primary.calls.length;
    for (let i = 0; i < 20; i++) parts.scheduler.add(await put([`n${i}@corp.example.com`]));
    // New mail for a destination that is down is not intake backlog (intake must go on during an outage).
    expect(parts.scheduler.backlog()).toBeLessThanOrEqual(1);
    expect(parts.primary.calls.length).toBe(callsWhenDown);
    // Waiting for a destination that is down: frozen (a large backlog stays small in memory).
    expect(parts.scheduler.frozenCount).toBeGreaterThanOrEqual(24);
    up = true;
    await until('delivered after the probe', () => parts.scheduler.size === 0, 10_000);
    expect(parts.scheduler.isDown('primary')).toBe(false);
    expect(parts.primary.calls.length).toBe(callsWhenDown + 25);
  });

  it('recipient-level deferrals (452, retryAfterMs) do not mark the destination down', () => {
    expect(isSessionFailure([{ recipient: 'a', status: 'deferred', detail: 'connect ECONNREFUSED' }])).toBe(true);
    expect(isSessionFailure([{ recipient: 'a', status: 'deferred', detail: '421 4.3.2 shutting down' }])).toBe(true);
    expect(isSessionFailure([{ recipient: 'a', status: 'deferred', detail: '452 4.2.2 mailbox full' }])).toBe(false);
    expect(isSessionFailure([{ recipient: 'a', status: 'deferred', detail: 'quota', retryAfterMs: 1000 }])).toBe(false);
    expect(isSessionFailure([{ recipient: 'a', status: 'deferred', detail: 'timeout' }, { recipient: 'b', status: 'delivered', detail: '250' }])).toBe(false);
    expect(isSessionFailure([])).toBe(false);
  });
});
