// `mail-continuity queue list|show` for a human at the spool (like postqueue -p
// and postcat): reads the spool directory directly, no running relay needed.
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
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

export async function runQueue(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { spool: { type: 'string', default: process.env.RELAY_SPOOL ?? '/var/spool/mail-continuity' }, dead: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } },
  });
  const [sub = 'list', id] = positionals;
  const which = values.dead ? 'dead' : 'queue';
  if (sub === 'list') {
    const states = await readSpoolDir(values.spool, which);
    if (values.json) {
      process.stdout.write(`${JSON.stringify(states, null, 2)}\n`);
      return 0;
    }
    for (const s of states) {
      process.stdout.write(
        `${s.id}  ${new Date(s.receivedAt).toISOString()}  ${String(s.size).padStart(9)}  <${s.mailFrom}> -> ${s.rcptTo.length} rcpt  ${s.messageId ? `<${s.messageId}>` : ''}\n    ${summary(s)}${s.dead ? `\n    dead: ${s.dead.reason}` : ''}\n`,
      );
    }
    process.stdout.write(`-- ${states.length} message(s) in ${join(values.spool, which)}\n`);
    return 0;
  }
  if (sub === 'show' && id) {
    if (!/^[0-9a-f]+$/.test(id)) {
      process.stderr.write('queue show: the id is the hex spool id from `queue list`\n');
      return 2;
    }
    const found = await readSpoolMessage(values.spool, which, id);
    if (!found) {
      process.stderr.write(`queue show: no message ${id} in ${join(values.spool, which)}\n`);
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
  process.stderr.write('usage: mail-continuity queue list [--dead] [--json] [--spool DIR] | queue show ID [--dead] [--spool DIR]\n');
  return 2;
}
