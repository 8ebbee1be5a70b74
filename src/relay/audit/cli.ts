// `mail-continuity audit verify|export` for compliance: reads the audit log
// files in a directory (a copy of the relay's volume, or the volume itself; no
// running relay needed) and checks their hash chain.
//   verify --dir DIR                      exit 0 when intact, 1 naming the first broken record or file
//   export --dir DIR [--since T] [--until T]  the records as written (JSON lines), time in [since, until)
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CliError, UsageError, parseCommandArgs, reportFailure, withUsage } from '../../lib/cli-args.js';
import { readChain, type ChainReport } from './read.js';

export const AUDIT_USAGE = `usage: mail-continuity audit verify --dir DIR [--file audit.log]
       mail-continuity audit export --dir DIR [--since TIME] [--until TIME] [--file audit.log]

  verify   checks the hash chain of every audit file in DIR (rotated ones and the active one);
           exit 0 when intact, 1 naming the first broken record or missing file
  export   prints the records (JSON lines, as written) whose time is in [since, until);
           TIME is ISO 8601 (2026-12-03 or 2026-12-03T18:00:00Z); the chain is checked as it goes
  --dir    the directory holding the audit log (the relay's spool volume)
  --file   the active file's name (default audit.log)
`;

function parseTime(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const t = /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(value) ? Date.parse(value) : NaN;
  if (Number.isNaN(t)) throw new UsageError(`--${flag}: "${value}" is not an ISO 8601 time such as 2026-12-03 or 2026-12-03T18:00:00Z`);
  return t;
}

const describeBreak = (r: ChainReport) => `${r.broken!.file}${r.broken!.line > 0 ? ` line ${r.broken!.line}` : ''}: ${r.broken!.reason}`;

/** Runs the command; a misuse (2) or a broken chain (1) is one line on `err`. */
export async function runAudit(args: string[], out: (s: string) => void = (s) => process.stdout.write(s), err: (s: string) => void = (s) => process.stderr.write(s)): Promise<number> {
  try {
    return await audit(args, out);
  } catch (e) {
    return reportFailure('mail-continuity audit', e, err);
  }
}

async function audit(args: string[], out: (s: string) => void): Promise<number> {
  if (args.some((a) => a === '--help' || a === '-h')) {
    out(AUDIT_USAGE);
    return 0;
  }
  const [sub, ...rest] = args;
  const { values } = parseCommandArgs(AUDIT_USAGE, {
    args: rest,
    options: { dir: { type: 'string' }, file: { type: 'string', default: 'audit.log' }, since: { type: 'string' }, until: { type: 'string' } },
  });
  return withUsage(AUDIT_USAGE, async () => {
    if (sub !== 'verify' && sub !== 'export') throw new UsageError(sub === undefined ? 'name a subcommand: verify or export' : `unknown subcommand "${sub}" (verify or export)`);
    if (values.dir === undefined) throw new UsageError('--dir is required: the directory holding the audit log');
    if (!(await stat(values.dir).catch(() => undefined))?.isDirectory()) throw new UsageError(`--dir: ${values.dir} is not a directory`);
    if (values.file.includes('/')) throw new UsageError('--file: a file name in --dir, without a directory');
    const active = join(values.dir, values.file);
    if (sub === 'verify') {
      if (values.since !== undefined || values.until !== undefined) throw new UsageError('--since and --until belong to export');
      const report = await readChain(active);
      if (report.broken) throw new CliError(`audit log broken: ${describeBreak(report)}`);
      for (const note of report.notes) out(`note: ${note}\n`);
      out(`audit log intact: ${report.files.length} file(s), segments ${report.segments.join(', ') || 'none'}, ${report.records} record(s), last hash ${report.lastHash ?? 'none'}\n`);
      return 0;
    }
    const since = parseTime('since', values.since) ?? -Infinity;
    const until = parseTime('until', values.until) ?? Infinity;
    if (since >= until) throw new UsageError('--since must be before --until');
    const report = await readChain(active, (record, line) => {
      const t = Date.parse(String(record.time));
      if (t >= since && t < until) out(`${line}\n`);
    });
    if (report.broken) throw new CliError(`audit log broken (the records above it were exported): ${describeBreak(report)}`);
    return 0;
  });
}
