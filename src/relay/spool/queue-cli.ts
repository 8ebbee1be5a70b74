// `mail-continuity queue list|show` for a human at the spool (like postqueue -p
// and postcat): reads the spool directory directly, no running relay needed.
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseCommandArgs, UsageError, withUsage } from '../../lib/cli-args.js';
import { readSpoolDir, readSpoolMessage } from './read.js';
import type { MessageState } from './state.js';

function summary(s: MessageState): string {
  const parts: string[] = [];
  for (const [dest, ds] of Object.entries(s.deliveries)) {
    if (!ds) continue;
    const counts: Record<string, number> = {};
    for (const r of Object.values(ds.recipients)) counts[r.status] = (counts[r.status] ?? 0) + 1;
    const next = ds.nextAttemptAt > Date.now() ? ` next ${new Date(ds.nextAttemptAt).toISOString()}` : '';
    parts.push(`${dest}: ${Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(', ')} (attempts ${ds.attempts}${next})${ds.lastError ? ` last: ${ds.lastError.slice(0, 80)}` : ''}`);
  }
  return parts.join('; ');
}

export const queueUsage = `usage: mail-continuity queue list [--dead] [--json] [--spool DIR]
       mail-continuity queue show ID [--dead] [--spool DIR]

  list           the messages in the spool's queue/ (with --dead: dead/), oldest first
  show ID        one message's state and headers (ID from list)
  --spool DIR    the relay's spool directory (default: $RELAY_SPOOL, else /var/spool/mail-continuity)
  --dead         the dead letters instead of the queue
  --json         list as JSON
`;

/** The spool directory, checked: a listing of a wrong path must not read as "nothing queued". */
async function spoolDir(dir: string): Promise<string> {
  const isDir = (p: string) => stat(p).then((s) => s.isDirectory(), () => false);
  if (!(await isDir(dir))) throw new UsageError(`--spool ${dir}: no such directory (the relay's spool, e.g. /var/spool/mail-continuity in a relay pod)`);
  if (!(await isDir(join(dir, 'queue')))) throw new UsageError(`--spool ${dir}: not a relay spool (it has no queue/ directory)`);
  return dir;
}

/** `queue list|show`; a misuse (or a spool that is not there) is a UsageError: one line and this usage, exit 2. */
export function runQueue(args: string[]): Promise<number> {
  return withUsage(queueUsage, () => queue(args));
}

async function queue(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(queueUsage, {
    args,
    allowPositionals: true,
    options: {
      spool: { type: 'string', default: process.env.RELAY_SPOOL || '/var/spool/mail-continuity' },
      dead: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(queueUsage);
    return 0;
  }
  const [sub = 'list', id, ...extra] = positionals;
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  if (sub !== 'list' && sub !== 'show') throw new UsageError(`unknown subcommand "${sub}" (list or show)`);
  if (sub === 'list' && id !== undefined) throw new UsageError(`list takes no ID ("${id}"): show ID`);
  if (sub === 'show' && id === undefined) throw new UsageError('show needs the ID of a message (from list)');
  if (sub === 'show' && !/^[0-9a-f]+$/.test(id!)) throw new UsageError(`"${id}" is not a spool id: the hex id from queue list`);
  const spool = await spoolDir(values.spool!);
  const which = values.dead ? 'dead' : 'queue';
  if (sub === 'list') {
    const states = await readSpoolDir(spool, which);
    if (values.json) {
      process.stdout.write(`${JSON.stringify(states, null, 2)}\n`);
      return 0;
    }
    for (const s of states) {
      process.stdout.write(
        `${s.id}  ${new Date(s.receivedAt).toISOString()}  ${String(s.size).padStart(9)}  <${s.mailFrom}> -> ${s.rcptTo.length} rcpt  ${s.messageId ? `<${s.messageId}>` : ''}\n    ${summary(s)}${s.dead ? `\n    dead: ${s.dead.reason}` : ''}\n`,
      );
    }
    process.stdout.write(`-- ${states.length} message(s) in ${join(spool, which)}\n`);
    return 0;
  }
  const found = await readSpoolMessage(spool, which, id!);
  if (!found) {
    process.stderr.write(`queue show: no message ${id} in ${join(spool, which)}\n`);
    return 1;
  }
  process.stdout.write(`${JSON.stringify(found.state, null, 2)}\n--- ${found.path} (headers)\n`);
  const head = Buffer.alloc(Math.min(found.state.size, 65_536));
  const fh = await open(found.path, 'r');
  try {
    await fh.read(head, 0, head.length, 0);
  } finally {
    await fh.close();
  }
  const text = head.toString('utf8');
  const end = text.indexOf('\r\n\r\n');
  process.stdout.write(`${end >= 0 ? text.slice(0, end) : text.slice(0, 8192)}\n`);
  return 0;
}
