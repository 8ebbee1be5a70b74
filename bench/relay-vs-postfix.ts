// Side-by-side intake benchmark on one machine, one run: the relay (its own
// process, fsync before 250, group commit) versus Postfix as a store-and-forward
// relay (cleanup fsyncs each queue file alone), both forwarding to the same
// kind of smtp-sink, both loaded by smtp-source with the same message count,
// size and session counts. Not a test: it prints and writes a table.
//
//   node --import tsx bench/relay-vs-postfix.ts [--messages 2000] [--sessions 1,10,50] [--size 4096] [--out bench/relay-vs-postfix.md]
//
// Intake = smtp-source start to its exit (every message answered 250);
// end to end = start until the sink holds every message.
import { spawn } from 'node:child_process';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { RelayConfigInput } from '../src/relay/config.js';
import { freePort, startPostfix, waitForPort } from '../test/harness/postfix.js';
import { smtpSource, startSmtpSink, TEST_DOMAINS } from '../test/harness/smtp-tools.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '2000' },
    sessions: { type: 'string', default: '1,10,50' },
    size: { type: 'string', default: '4096' },
    out: { type: 'string', default: 'bench/relay-vs-postfix.md' },
  },
});
const messages = Number(values.messages);
const sessionCounts = values.sessions.split(',').map(Number);
const size = Number(values.size);

interface Row {
  target: 'relay' | 'postfix';
  sessions: number;
  intakeMs: number;
  e2eMs: number;
  accepted: number;
  errors: string;
  /** Relay only: spool commits and the directory fsyncs that carried them. */
  commits?: number;
  batches?: number;
}

/** What one write+fsync costs on this machine's temp file system (sequential, and 64 in parallel). */
async function fsyncProbe(): Promise<{ sequentialMs: number; parallelMs: number }> {
  const d = await mkdtemp(join(tmpdir(), 'bench-fsync-'));
  const buf = Buffer.alloc(4096, 1);
  const one = async (name: string) => {
    const fh = await open(join(d, name), 'w');
    await fh.write(buf);
    await fh.sync();
    await fh.close();
  };
  let t = performance.now();
  for (let i = 0; i < 200; i++) await one(`s${i}`);
  const sequentialMs = (performance.now() - t) / 200;
  t = performance.now();
  await Promise.all(Array.from({ length: 64 }, (_, i) => one(`p${i}`)));
  const parallelMs = (performance.now() - t) / 64;
  await rm(d, { recursive: true, force: true });
  return { sequentialMs, parallelMs };
}

async function measure(target: Row['target'], port: number, sinkCount: () => Promise<number>, sessions: number): Promise<Row> {
  const t0 = Date.now();
  const src = await smtpSource({ port, messages, sessions, to: 'user@corp.example.com', numberRecipients: true, length: size, reuseConnections: true, timeoutMs: 600_000 });
  const intakeMs = Date.now() - t0;
  const deadline = Date.now() + 600_000;
  let n = 0;
  while ((n = await sinkCount()) < messages && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return { target, sessions, intakeMs, e2eMs: Date.now() - t0, accepted: n, errors: src.stderr.trim().split('\n').filter(Boolean).slice(0, 2).join(' | ') };
}

async function runPostfix(sessions: number): Promise<Row> {
  const sink = await startSmtpSink();
  const pf = await startPostfix({ domains: TEST_DOMAINS, relayhost: `[127.0.0.1]:${sink.port}` });
  try {
    return await measure('postfix', pf.port, () => sink.count(), sessions);
  } finally {
    await pf.destroy();
    await sink.stop();
  }
}

async function runRelay(sessions: number): Promise<Row> {
  const sink = await startSmtpSink();
  const dir = await mkdtemp(join(tmpdir(), 'bench-relay-'));
  const port = await freePort();
  const httpPort = await freePort();
  const config: RelayConfigInput = {
    instance: 'bench',
    spec: {
      domains: TEST_DOMAINS,
      mode: 'FailoverOnly',
      primary: { host: '127.0.0.1', port: sink.port, tls: 'None' },
      backup: { gmail: { method: 'SmtpRelay', smtpRelay: { host: '127.0.0.1', port: 9 } } },
      relay: { acceptFrom: ['127.0.0.0/8'] },
      failover: { messageDeadline: '15m' },
    },
    listen: { host: '127.0.0.1', port, hostname: 'relay.bench' },
    http: { host: '127.0.0.1', port: httpPort },
    paths: { spool: join(dir, 'spool') },
    tuning: { greetingDelay: false, maxBacklog: 100_000, primaryConcurrency: 20, spoolMinFreeBytes: 0, sweepIntervalMs: 200 },
  };
  await writeFile(join(dir, 'relay.json'), JSON.stringify(config));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/relay/main.ts', '--config', join(dir, 'relay.json')], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  try {
    await waitForPort(port, 'up', 60_000);
    const row = await measure('relay', port, () => sink.count(), sessions);
    await new Promise((r) => setTimeout(r, 500)); // one sweep: the gauges are current
    const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    row.commits = Number(/^relay_spool_commits_total\{[^}]*\} (\d+)/m.exec(metrics)?.[1] ?? NaN);
    row.batches = Number(/^relay_spool_commit_batches\{[^}]*\} (\d+)/m.exec(metrics)?.[1] ?? NaN);
    return row;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await sink.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const probe = await fsyncProbe();
const rows: Row[] = [];
for (const s of sessionCounts) {
  for (const run of [runPostfix, runRelay]) {
    const row = await run(s);
    rows.push(row);
    process.stderr.write(`${row.target} sessions=${s}: intake ${row.intakeMs} ms (${Math.round((messages * 1000) / row.intakeMs)} msg/s), end to end ${row.e2eMs} ms, ${row.accepted}/${messages} at the sink ${row.errors}\n`);
  }
}

const rate = (ms: number) => Math.round((messages * 1000) / ms);
const table = [
  `# Relay vs Postfix: intake with fsync before 250`,
  '',
  `${new Date().toISOString()}, ${cpus().length} CPU (${cpus()[0]?.model ?? '?'}), Node ${process.version}, spool and Postfix queue on ${tmpdir()}.`,
  `${messages} messages of ${size} bytes per run from smtp-source (-d: several messages per connection, -N: distinct recipients), both forwarding to smtp-sink.`,
  `write+fsync of 4 KiB here: ${probe.sequentialMs.toFixed(2)} ms sequential, ${probe.parallelMs.toFixed(2)} ms per file with 64 in parallel.`,
  '',
  '| sessions | Postfix intake msg/s | relay intake msg/s | Postfix end to end msg/s | relay end to end msg/s | at sink (Postfix / relay) | relay commits / dir fsyncs |',
  '|---:|---:|---:|---:|---:|---:|---:|',
  ...sessionCounts.map((s) => {
    const p = rows.find((r) => r.target === 'postfix' && r.sessions === s)!;
    const r = rows.find((x) => x.target === 'relay' && x.sessions === s)!;
    return `| ${s} | ${rate(p.intakeMs)} | ${rate(r.intakeMs)} | ${rate(p.e2eMs)} | ${rate(r.e2eMs)} | ${p.accepted} / ${r.accepted} | ${r.commits} / ${r.batches} |`;
  }),
  '',
].join('\n');
process.stdout.write(`${table}\n`);
await writeFile(values.out, table);
