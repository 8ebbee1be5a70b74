// `mail-continuity dead export|purge`: the dead letters for a human, read and
// removed in the spool directory itself (no running relay needed; the relay's
// own limits are in dead.ts). export writes an mbox (mboxrd: ">From " quoting)
// any mail client or `formail` can read; purge removes what it is told to.
import { createWriteStream, type WriteStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDuration } from '../../api/v1alpha1/formats.js';
import { CliError, parseCommandArgs, UsageError, withUsage } from '../../lib/cli-args.js';
import { listDead, removeDead } from './dead.js';
import type { MessageState } from './state.js';

export const deadUsage = `usage: mail-continuity dead export [ID...] [--out FILE] [--spool DIR]
       mail-continuity dead purge (ID... | --older-than DURATION | --all) [--spool DIR]

  export         the dead letters (all, or the IDs given) as one mbox on stdout or --out FILE,
                 each with X-Mail-Continuity-Spool-Id and X-Mail-Continuity-Dead-Reason
  purge          removes the IDs given, those moved to dead/ longer ago than DURATION
                 (e.g. 72h, 30m), or with --all every one; prints how many
  --spool DIR    the relay's spool directory (default: $RELAY_SPOOL, else /var/spool/mail-continuity)
  (mail-continuity queue list --dead lists them with their reasons)
`;

export function runDead(args: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  return withUsage(deadUsage, () => dead(args, out));
}

async function dead(args: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parseCommandArgs(deadUsage, {
    args,
    allowPositionals: true,
    options: {
      spool: { type: 'string', default: process.env.RELAY_SPOOL ?? '/var/spool/mail-continuity' },
      out: { type: 'string' },
      'older-than': { type: 'string' },
      all: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    out(deadUsage);
    return 0;
  }
  const [sub, ...ids] = positionals;
  if (sub !== 'export' && sub !== 'purge') throw new UsageError(sub === undefined ? 'no subcommand given (export or purge)' : `unknown subcommand "${sub}" (export or purge)`);
  const bad = ids.find((id) => !/^[0-9a-f]+$/.test(id));
  if (bad !== undefined) throw new UsageError(`"${bad}" is not a spool id: the hex id from queue list --dead`);
  const deadDir = join(values.spool!, 'dead');
  if (!(await stat(deadDir).then((s) => s.isDirectory(), () => false))) throw new UsageError(`--spool ${values.spool}: not a relay spool (it has no dead/ directory)`);
  const entries = await listDead(deadDir);
  const known = new Set(entries.map((e) => e.id));
  const missing = ids.find((id) => !known.has(id));
  if (missing !== undefined) throw new CliError(`no dead letter ${missing} in ${deadDir}`);

  if (sub === 'export') {
    if (values['older-than'] !== undefined || values.all) throw new UsageError('export takes IDs or nothing (every dead letter), not --older-than or --all');
    const chosen = ids.length ? ids : entries.sort((a, b) => a.at - b.at).map((e) => e.id);
    const file: WriteStream | undefined = values.out ? createWriteStream(values.out, { flags: 'wx', mode: 0o600 }) : undefined;
    for (const id of chosen) {
      const text = await mboxEntry(deadDir, id);
      if (file) {
        if (!file.write(text)) await new Promise<void>((r) => file.once('drain', () => r()));
      } else out(text);
    }
    if (file) await new Promise<void>((resolve, reject) => file.end((e?: Error | null) => (e ? reject(new CliError(`--out ${values.out}: ${e.message}`)) : resolve())));
    process.stderr.write(`exported ${chosen.length} dead letter(s)${values.out ? ` to ${values.out}` : ''}\n`);
    return 0;
  }

  const selectors = [ids.length > 0, values['older-than'] !== undefined, values.all].filter(Boolean).length;
  if (selectors !== 1) throw new UsageError('purge needs exactly one of: IDs, --older-than DURATION, --all');
  let chosen = ids;
  if (values['older-than'] !== undefined) {
    let ms = NaN;
    try {
      ms = parseDuration(values['older-than']);
    } catch {
      // explained below
    }
    if (!Number.isFinite(ms) || ms < 0) throw new UsageError(`--older-than: "${values['older-than']}" is not a duration such as 72h or 30m`);
    chosen = entries.filter((e) => Date.now() - e.at > ms).map((e) => e.id);
  } else if (values.all) chosen = entries.map((e) => e.id);
  for (const id of chosen) await removeDead(deadDir, id);
  out(`removed ${chosen.length} dead letter(s) from ${deadDir}\n`);
  return 0;
}

/** One mbox entry: a From_ line, two headers saying where it comes from, the message with LF newlines, ">From " quoted. */
async function mboxEntry(deadDir: string, id: string): Promise<string> {
  const state = JSON.parse(await readFile(join(deadDir, `${id}.json`), 'utf8').catch(() => '{}')) as Partial<MessageState>;
  const body = await readFile(join(deadDir, `${id}.eml`), 'latin1').catch(() => '');
  const when = new Date(state.dead?.at ?? state.receivedAt ?? Date.now());
  const sender = state.mailFrom || 'MAILER-DAEMON';
  const reason = (state.dead?.reason ?? 'unknown').replace(/[\r\n]+/g, ' ');
  const text = body.replace(/\r\n/g, '\n').replace(/^(>*From )/gm, '>$1');
  return `From ${sender} ${when.toUTCString()}\nX-Mail-Continuity-Spool-Id: ${id}\nX-Mail-Continuity-Dead-Reason: ${reason}\n${text}${text.endsWith('\n') ? '' : '\n'}\n`;
}
