// The audit log on a full disk (a 1 MB tmpfs mounted by the test, needs root):
// copies to the backup pause (no copy leaves without its write-ahead record),
// the admin snapshot says auditFailing and relay_audit_write_failing is 1,
// intake and delivery to the primary (Postfix) go on; once space is freed the
// copies resume and the hash chain of what was written is intact.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { FailoverSnapshot } from '../../src/api/relay/admin.js';
import { readChain } from '../../src/relay/audit/read.js';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { relayTestConfig, startSmtpSink, swaks, type SmtpSink } from '../harness/smtp-tools.js';
import { waitUntil } from '../harness/wait.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
let postfix: PostfixInstance;
let sink: SmtpSink;
let dir: string;
let mnt: string;
let mounted = false;
let relay: Relay | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-auditfull-'));
  mnt = join(dir, 'audit');
  await mkdir(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', mnt]);
  mounted = true;
  postfix = await startPostfix({ domains: ['corp.example.com', 'example.org'], recipients: ['alice@corp.example.com'] });
  sink = await startSmtpSink();
}, 60_000);

afterAll(async () => {
  await relay?.stop().catch(() => undefined);
  await sink?.stop();
  await postfix?.destroy();
  if (mounted) execFileSync('umount', ['-l', mnt]);
  await rm(dir, { recursive: true, force: true });
}, 60_000);

async function snapshot(r: Relay): Promise<FailoverSnapshot> {
  const res = await fetch(`http://127.0.0.1:${r.httpPort}/admin/failover`, { headers: { authorization: 'Bearer t0ken' } });
  return (await res.json()) as FailoverSnapshot;
}

/** Fills the file system with a file until the disk is full. */
async function fill(path: string): Promise<void> {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const parts: Buffer[] = [];
  for (let i = 0; i < 64; i++) parts.push(chunk);
  await writeFile(path, Buffer.concat(parts)).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOSPC') throw e;
  });
}

describe('audit log on a full disk', () => {
  it('pauses copies to the backup and says so; they resume when it can be written, the chain intact', async () => {
    const auditPath = join(mnt, 'audit.log');
    await writeFile(join(dir, 'token'), 't0ken');
    relay = await startRelay(
      relayTestConfig({
        spool: join(dir, 'spool'),
        primaryPort: postfix.port,
        backupPort: sink.port,
        spec: { mode: 'DualDelivery' },
        paths: { audit: auditPath, adminToken: join(dir, 'token') },
      }),
      { log },
    );
    // A first copy reaches the backup: its records are in the file.
    expect((await swaks({ port: relay.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <before@partner.example.net>'] })).code).toBe(0);
    await waitUntil('first copy at the backup', 20_000, async () => (await sink.messageIds()).includes('before@partner.example.net'));
    await waitUntil('spool empty', 20_000, () => relay!.scheduler.size === 0);

    await fill(join(mnt, 'filler'));
    // The audit file's last page still takes a few records; then a write fails.
    let paused = '';
    for (let k = 0; k < 20 && !paused; k++) {
      const id = `during-${k}@partner.example.net`;
      expect((await swaks({ port: relay.smtpPort, to: 'alice@corp.example.com', headers: [`Message-ID: <${id}>`] })).code).toBe(0);
      await postfix.waitFor((m) => m.some((x) => x.messageId === id), 30_000, `${id} at the primary`);
      await waitUntil(`${id} copied or paused`, 20_000, async () => (await sink.messageIds()).includes(id) || (await snapshot(relay!)).auditFailing === true);
      if ((await snapshot(relay)).auditFailing === true) paused = id;
    }
    expect(paused).not.toBe('');
    expect(await relay.metrics.registry.getSingleMetricAsString('relay_audit_write_failing')).toMatch(/relay_audit_write_failing\{instance="relay-test"\} 1/);
    expect(await sink.messageIds()).not.toContain(paused);
    const st = [...relay.scheduler.states()][0]!;
    expect(st.messageId).toBe(paused);
    expect(st.deliveries.backup?.lastError).toMatch(/audit log cannot be written: copies to the backup paused/);

    await rm(join(mnt, 'filler'));
    await waitUntil('the copy resumes', 30_000, async () => (await sink.messageIds()).includes(paused));
    await waitUntil('the snapshot clears', 10_000, async () => (await snapshot(relay!)).auditFailing === false);
    expect(await relay.metrics.registry.getSingleMetricAsString('relay_audit_write_failing')).toMatch(/relay_audit_write_failing\{instance="relay-test"\} 0/);
    await waitUntil('spool empty', 20_000, () => relay!.scheduler.size === 0);
    await waitUntil('the outcome audited', 10_000, async () => (await readFile(auditPath, 'utf8')).split('\n').some((l) => l.includes(paused) && l.includes('"copied-to-backup"')));
    const records: Array<Record<string, unknown>> = [];
    const chain = await readChain(auditPath, (r) => records.push(r));
    expect(chain.broken).toBeUndefined();
    expect(records.filter((r) => r.messageId === paused).map((r) => [r.action, r.reason])).toEqual([
      ['copy-intent', 'dual-delivery'],
      ['copied-to-backup', null],
    ]);
  }, 120_000);
});
