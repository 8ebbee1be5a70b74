// The durability promises, proved on the system calls of the relay process
// (strace -f attached from the start), not on a kill: a SIGKILL keeps the page
// cache, so the crash test would pass with the fsyncs removed. As the docs
// state them (src/relay/README.md, "Durability" and "Spool layout"):
// - queue file: the file's fdatasync and an fsync of queue/ that began after the
//   file was created have both returned before `250 ... queued as ID` is written
//   to the client's socket;
// - journal: the line {"id","attempt":dest,"n"} has been written (write(2)
//   returned: it survives a crash of the process) before the attempt's MAIL FROM
//   goes to that destination;
// - audit: the "copy-intent" line has been written and an fdatasync of the audit
//   log that began after that write has returned before the copy's MAIL FROM goes
//   to the backup.
// Real Postfix as the primary, smtp-sink as the backup (SmtpRelay), DualDelivery:
// every message is copied. The queue is on the machine's disk (/var/tmp), not tmpfs.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '../harness/controlplane.js';
import { startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { relayCommand, startRelayProcess, stopRelayProcess, type RelayProcess } from '../harness/relay-process.js';
import { relayTestConfig, startSmtpSink, swaks, type SmtpSink } from '../harness/smtp-tools.js';
import { fdPath, isWrite, readStrace, straceCommand, succeeded, type Syscall } from '../harness/strace.js';
import { waitUntil } from '../harness/wait.js';

let postfix: PostfixInstance;
let sink: SmtpSink;
let dir: string;
let relay: RelayProcess | undefined;

beforeAll(async () => {
  dir = await mkdtemp('/var/tmp/relay-durability-');
  postfix = await startPostfix({ domains: ['corp.example.com', 'example.org'] });
  sink = await startSmtpSink();
}, 60_000);

afterAll(async () => {
  await stopRelayProcess(relay);
  await postfix?.destroy();
  await sink?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

/** The text strace printed for a call's buffers, with \" unescaped. */
const text = (c: Syscall) => c.args.replaceAll('\\"', '"');
/** The remote port of a TCP socket write (`write(29<TCP:[127.0.0.1:5->127.0.0.1:25]>, ...`). */
const toPort = (c: Syscall) => Number(/^\d+<TCP:\[[^\]]*->[^\]]*:(\d+)\]>/.exec(c.args)?.[1] ?? NaN);
const fromPort = (c: Syscall) => Number(/^\d+<TCP:\[[^\]]*:(\d+)->/.exec(c.args)?.[1] ?? NaN);

/** Every broken promise for message `id` (sent from `sender`), as sentences; empty when all hold. */
function durabilityViolations(calls: Syscall[], o: { id: string; sender: string; queueDir: string; journal: string; audit: string; smtpPort: number; primaryPort: number; backupPort: number }): string[] {
  const out: string[] = [];
  const file = join(o.queueDir, `${o.id}.msg`);
  const reply = calls.find((c) => isWrite(c) && fromPort(c) === o.smtpPort && text(c).includes(`250 2.0.0 Ok: queued as ${o.id}`));
  if (!reply) return [`no "250 ... queued as ${o.id}" written to the client`];
  const created = calls.find((c) => c.name === 'openat' && c.args.includes(`"${file}"`) && succeeded(c));
  if (!created) return [`${file} never created`];
  const lastData = calls.filter((c) => isWrite(c) && fdPath(c) === file && c.start < reply.start).at(-1);
  const fileSync = calls.find((c) => c.name === 'fdatasync' && fdPath(c) === file && succeeded(c) && c.start > (lastData?.end ?? created.end) && c.end < reply.start);
  if (!fileSync) out.push(`queue file: no fdatasync of ${o.id}.msg after its last write returned before the 250 was written`);
  const dirSync = calls.find((c) => c.name === 'fsync' && fdPath(c) === o.queueDir && succeeded(c) && c.start > created.end && c.end < reply.start);
  if (!dirSync) out.push(`queue file: no fsync of queue/ begun after ${o.id}.msg was created returned before the 250 was written`);

  const mailFrom = (port: number) => calls.find((c) => isWrite(c) && toPort(c) === port && text(c).includes(`MAIL FROM:<${o.sender}>`));
  for (const [dest, port] of [['primary', o.primaryPort], ['backup', o.backupPort]] as const) {
    const start = mailFrom(port);
    if (!start) {
      out.push(`${dest}: the message never went there`);
      continue;
    }
    const line = calls.find((c) => isWrite(c) && fdPath(c) === o.journal && text(c).includes(`{"id":"${o.id}","attempt":"${dest}","n":1}`) && succeeded(c));
    if (!line || line.end > start.start) out.push(`journal: the ${dest} attempt line was not written before the attempt started`);
  }
  const backupStart = mailFrom(o.backupPort);
  const intent = calls.find((c) => isWrite(c) && fdPath(c) === o.audit && text(c).split('\\n').some((l) => l.includes(`"spoolId":"${o.id}"`) && l.includes('"action":"copy-intent"')) && succeeded(c));
  if (!intent || !backupStart || intent.end > backupStart.start) out.push('audit: the copy-intent line was not written before the copy started');
  else if (!calls.some((c) => c.name === 'fdatasync' && fdPath(c) === o.audit && succeeded(c) && c.start > intent.end && c.end < backupStart.start)) {
    out.push('audit: no fdatasync of the audit log after the copy-intent line returned before the copy started');
  }
  return out;
}

describe('durability, on the relay process system calls', () => {
  it('before 250 the queue file and queue/ are synced; the journal line precedes each attempt; the fdatasync\'ed copy-intent precedes the copy', async () => {
    const smtpPort = await freePort();
    const spool = join(dir, 'spool');
    const config = relayTestConfig({ spool, primaryPort: postfix.port, backupPort: sink.port, instance: 'durability', listenPort: smtpPort, spec: { mode: 'DualDelivery' } });
    const trace = join(dir, 'strace.out');
    const calls = ['openat', 'fdatasync', 'fsync', 'write', 'writev', 'pwrite64', 'pwritev', 'sendto', 'sendmsg'];
    relay = await startRelayProcess(config, dir, (f) => [...straceCommand(trace, calls), ...relayCommand(f)]);

    // Sequential messages, then concurrent ones (the group commit shares the queue/ fsync).
    const send = (i: number) => swaks({ port: smtpPort, from: `sender${i}@partner.example.net`, to: 'alice@corp.example.com', headers: [`Message-ID: <durable-${i}@partner.example.net>`] });
    for (let i = 0; i < 3; i++) expect((await send(i)).code).toBe(0);
    expect((await Promise.all([3, 4, 5, 6, 7].map(send))).map((r) => r.code)).toEqual([0, 0, 0, 0, 0]);
    await postfix.waitFor((m) => m.filter((x) => x.messageId?.startsWith('durable-')).length === 8, 30_000, 'eight at the primary');
    await waitUntil('eight copies at the backup', 30_000, async () => (await sink.count()) >= 8);
    await stopRelayProcess(relay);

    const syscalls = await readStrace(trace);
    const ids = syscalls.filter((c) => isWrite(c) && fromPort(c) === smtpPort).flatMap((c) => [.../250 2\.0\.0 Ok: queued as ([0-9a-f]+)/.exec(c.args)?.slice(1) ?? []]);
    expect(ids).toHaveLength(8);
    const senderOf = new Map(syscalls.filter((c) => c.name === 'pwrite64').flatMap((c) => {
      const m = /queue\/([0-9a-f]+)\.msg>.*?\\"mailFrom\\":\\"([^\\]+)\\"/.exec(c.args);
      return m ? [[m[1]!, m[2]!] as const] : [];
    }));
    const violations = ids.flatMap((id) =>
      durabilityViolations(syscalls, {
        id,
        sender: senderOf.get(id) ?? '?',
        queueDir: join(spool, 'queue'),
        journal: join(spool, 'journal.log'),
        audit: join(spool, 'audit.log'),
        smtpPort,
        primaryPort: postfix.port,
        backupPort: sink.port,
      }).map((v) => `${id}: ${v}`),
    );
    expect(violations).toEqual([]);
  }, 180_000);
});
