// A full spool disk: the relay answers 452 4.3.1 (never 250 for mail that is
// not on disk), leaves no partial files, loses nothing it accepted, and takes
// mail again once deliveries free space. A 4 MB tmpfs mounted by the test
// (needs root), Postfix stopped while the disk fills so nothing drains.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { readSpoolDir } from '../../src/relay/spool/read.js';
import { startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { RawSmtp, relayTestConfig } from '../harness/smtp-tools.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
let postfix: PostfixInstance;
let dir: string;
let mnt: string;
let mounted = false;
const relays: Relay[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-diskfull-'));
  mnt = join(dir, 'mnt');
  await mkdir(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', mnt]);
  mounted = true;
  postfix = await startPostfix({ domains: ['corp.example.com', 'example.org'] });
}, 60_000);

afterAll(async () => {
  for (const r of relays) await r.stop().catch(() => undefined);
  await postfix?.destroy();
  if (mounted) execFileSync('umount', ['-l', mnt]);
  await rm(dir, { recursive: true, force: true });
}, 60_000);

/** Sends one message of about `size` bytes; returns the reply to the final dot (or the first refusal). */
async function send(port: number, messageId: string, size: number): Promise<string> {
  const s = await RawSmtp.open(port);
  try {
    await s.reply();
    await s.cmd('EHLO client.partner.example.net');
    const mail = await s.cmd('MAIL FROM:<a@partner.example.net>');
    if (!/^250/.test(mail)) return mail;
    await s.cmd('RCPT TO:<alice@corp.example.com>');
    await s.cmd('DATA');
    s.write(`Subject: fill\r\nMessage-ID: <${messageId}>\r\n\r\n`);
    const line = `${'z'.repeat(998)}\r\n`;
    for (let i = 0; i < Math.ceil(size / line.length); i++) s.write(line);
    return await s.cmd('.', 30_000);
  } finally {
    s.close();
  }
}

describe('relay with a full spool disk', () => {
  it('answers 452 4.3.1 when the disk is full, keeps every accepted message, recovers when space frees', async () => {
    const spool = join(mnt, 'spool');
    const relay = await startRelay(relayTestConfig({ spool, primaryPort: postfix.port, instance: 'diskfull' }), { log });
    relays.push(relay);
    const reserve = await startRelay(
      relayTestConfig({ spool: join(mnt, 'spool-reserve'), primaryPort: postfix.port, instance: 'reserve', tuning: { spoolMinFreeBytes: 2 * 1024 * 1024 } }),
      { log },
    );
    relays.push(reserve);
    await postfix.stop();
    const accepted: string[] = [];
    const refused: string[] = [];
    try {
      for (let i = 0; i < 40 && refused.length < 2; i++) {
        const id = `fill-${i}@partner.example.net`;
        const reply = await send(relay.smtpPort, id, 300_000);
        if (/^250 /.test(reply)) accepted.push(id);
        else {
          expect(reply).toMatch(/^452 4\.3\.1 /);
          refused.push(id);
        }
      }
      expect(accepted.length).toBeGreaterThanOrEqual(5);
      expect(refused).toHaveLength(2);
      // No partial message files: exactly the accepted messages in the queue, each complete.
      expect(await readdir(join(spool, 'queue'))).toHaveLength(accepted.length);
      expect((await readSpoolDir(spool, 'queue')).map((s) => s.messageId).sort()).toEqual([...accepted].sort());
      expect(await relay.metrics.registry.metrics()).toMatch(/relay_smtp_rejected_total\{instance="diskfull",reason="spool-full"\} 2/);

      // A relay that keeps a free-space reserve refuses already at MAIL FROM.
      const s = await RawSmtp.open(reserve.smtpPort);
      await s.reply();
      await s.cmd('EHLO client.partner.example.net');
      expect(await s.cmd('MAIL FROM:<a@partner.example.net>')).toMatch(/^452 4\.3\.1 /);
      s.close();
    } finally {
      await postfix.start();
    }
    await postfix.waitFor((m) => accepted.every((id) => m.some((x) => x.messageId === id)), 120_000, 'every accepted message');
    const deadline = Date.now() + 60_000;
    while (relay.scheduler.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(relay.scheduler.size).toBe(0);
    const counts = await postfix.countByMessageId();
    for (const id of accepted) expect(counts.get(id)).toBe(1);
    for (const id of refused) expect(counts.has(id)).toBe(false);
    // Space is back: mail is taken again.
    expect(await send(relay.smtpPort, 'after-full@partner.example.net', 300_000)).toMatch(/^250 /);
  }, 300_000);
});
