// A relay that cannot write its audit log, as the operator reports it: the
// relay's audit log on a 1 MB tmpfs mounted by the test (needs root) is filled;
// its copies to Gmail pause, its admin snapshot says auditFailing, and the
// operator sets BackupReachable=False AuditLogNotWritable on the
// MailContinuity; once space is freed the copies resume and the condition
// clears. Real apiserver, operator and relay processes, Postfix, the Gmail emulator.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { swaks } from '../harness/smtp-tools.js';
import { FAST_RELAY_TUNING, loopbackSpec, startStack, type Stack } from '../harness/stack.js';
import { waitFor } from '../harness/wait.js';

const USER = 'alice@corp.example.com';
let stack: Stack;
let dir: string;
let mnt: string;
let mounted = false;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'op-audit-'));
  mnt = join(dir, 'audit');
  await mkdir(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', mnt]);
  mounted = true;
  stack = await startStack({
    name: 'audit',
    relays: 1,
    domains: ['corp.example.com'],
    gmailUsers: [USER],
    spec: {
      ...loopbackSpec({ domain: 'corp.example.com', periodSeconds: 1, failureThreshold: 2, successThreshold: 2, messageDeadline: '15m', maxMessagesPerSecond: 50 }),
      mode: 'DualDelivery',
    },
    tuning: FAST_RELAY_TUNING,
    auditFile: () => join(mnt, 'audit.log'),
    progress: (l) => process.env.MC_TEST_LOG && console.log(l),
  });
}, 240_000);

afterAll(async () => {
  await stack?.stop();
  if (mounted) execFileSync('umount', ['-l', mnt]);
  await rm(dir, { recursive: true, force: true });
}, 60_000);

const auditFailing = async () => ((await stack.relayState(0)) as { auditFailing?: boolean }).auditFailing === true;
const atGmail = () => stack.gmail.messages(USER).map((m) => m.rfc822MessageId);

describe('an audit log that cannot be written', () => {
  it('pauses copies to Gmail and the operator says so (BackupReachable=False AuditLogNotWritable), until it can', async () => {
    await writeFile(join(mnt, 'filler'), Buffer.alloc(1024 * 1024, 0x61)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOSPC') throw e;
    });
    // The audit file's last page may still take a few records: send until a copy is paused.
    let paused = '';
    for (let k = 0; k < 20 && !paused; k++) {
      const id = `full-${k}@partner.example.net`;
      expect((await swaks({ port: stack.smtp.port, to: USER, headers: [`Message-ID: <${id}>`] })).code).toBe(0);
      await waitFor(`${id} copied or paused`, async () => atGmail().includes(id) || (await auditFailing()), 30_000);
      if (await auditFailing()) paused = id;
    }
    expect(paused).not.toBe('');
    const cond = await waitFor('BackupReachable=False AuditLogNotWritable', () => {
      const c = stack.condition('BackupReachable');
      return c?.status === 'False' && c.reason === 'AuditLogNotWritable' ? c : undefined;
    }, 60_000);
    expect(cond.message).toMatch(/^1 of 1 relays cannot write their audit log .*copies to Gmail are paused/);
    expect(atGmail()).not.toContain(paused);

    await rm(join(mnt, 'filler'));
    await waitFor('the paused copy at Gmail', () => atGmail().includes(paused), 60_000);
    await waitFor('BackupReachable clears', () => stack.condition('BackupReachable')?.reason !== 'AuditLogNotWritable', 60_000);
    expect(stack.condition('BackupReachable')?.status).not.toBe('False');
  }, 300_000);
});
