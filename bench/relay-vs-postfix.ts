// Side by side on one machine, in one run: Postfix configured as a dual-delivery
// relay (always_bcc + transport_maps; cleanup fsyncs each queue file) and our
// relay (DualDelivery; fsync before 250 with group commit), each delivering to
// two smtp-sinks (Exchange's and Google's stand-ins), loaded by the same
// smtp-source runs. Not a test: it prints a table and writes it to --out.
//
//   node --import tsx bench/relay-vs-postfix.ts [--messages 5000] [--size 10240] [--sessions 20,100]
//        [--reuse yes,no] [--backlog 0] [--out bench/relay-vs-postfix.md]
//
// The relay runs as built (dist/, `npm run build` first), as in the image.
// Per run:
// - intake: smtp-source's start to its exit (every message answered);
// - end to end: smtp-source's start until both sinks hold every message (msg/s counts messages, not copies);
// - p99 accept latency: end of DATA to the 250, measured by one extra client
//   that sends 10 KB messages one after another during the load (with or without
//   reuse, like the load);
// - peak memory: the relay's RSS, and the sum of PSS over the Postfix processes
//   (their shared libraries counted once), sampled every 200 ms.
// --backlog N: N messages with the primary's sink not running (Exchange stopped):
// peak memory while the backlog builds and after.
// The cost of the exclusion policy: --targets relay,relay-rules --rounds 5 runs the
// relay without rules and with --rules N (default 10) exclusion rules, alternately in
// each round, and adds a table of their end-to-end ratio (median over the rounds).
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { RELAY_PROCESS_ENV } from '../src/operator/builders/statefulset.js';
import { freePort, startPostfix } from '../test/harness/postfix.js';
import { smtpSource, startSmtpSink, TEST_DOMAINS, type SmtpSink } from '../test/harness/smtp-tools.js';
import { podMemoryLimit, startBenchRelay } from './relay-process.js';
import { exclusionRules } from './exclusion-rules.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '5000' },
    size: { type: 'string', default: '10240' },
    sessions: { type: 'string', default: '20,100' },
    reuse: { type: 'string', default: 'yes,no' },
    backlog: { type: 'string', default: '0' },
    out: { type: 'string', default: 'bench/relay-vs-postfix.md' },
    targets: { type: 'string', default: 'postfix,relay' },
    rules: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '1' },
  },
});
const messages = Number(values.messages);
const size = Number(values.size);
const sessionCounts = values.sessions.split(',').map(Number);
const reuseModes = values.reuse.split(',').map((v) => v === 'yes');
const backlog = Number(values.backlog);
const targets = values.targets.split(',') as Name[];
const rounds = Number(values.rounds);

type Name = 'postfix' | 'relay' | 'relay-rules';

const exclude = exclusionRules(Number(values.rules));
interface Target {
  name: Name;
  port: number;
  /** Memory now, in bytes (relay: RSS; Postfix: PSS summed over its processes). */
  memory(): Promise<number>;
  /** CPU time used so far (user + system), in ms; the relay only (a loaded machine slows it, it does not inflate it). */
  cpuMs?(): Promise<number>;
  stop(): Promise<void>;
}

/** utime + stime of a process, in ms (clock ticks of 10 ms). */
async function cpuMsOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

interface Row {
  target: Name;
  sessions: number;
  reuse: boolean;
  intakeMs: number;
  e2eMs: number;
  atSinks: [number, number];
  sampled: number;
  p50: number;
  p99: number;
  peakMemory: number;
  errors: string;
  /** The relay's CPU time over the run, in ms (undefined for Postfix). */
  cpuMs?: number;
}

async function procStatus(pid: number, field: string): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
}

/** Postfix's master and every process below it. */
async function descendants(root: number): Promise<number[]> {
  const parent = new Map<number, number>();
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const stat = await readFile(`/proc/${d}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    parent.set(Number(d), ppid);
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const [pid, pp] of parent) if (pp === out[i]) out.push(pid);
  return out;
}

async function pss(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
  return Number(/^Pss:\s+(\d+) kB/m.exec(text)?.[1] ?? 0) * 1024;
}

async function startPostfixTarget(primary: number, backup: number): Promise<Target> {
  const pf = await startPostfix({
    domains: TEST_DOMAINS,
    relayhost: `[127.0.0.1]:${primary}`,
    extraMainCf: [
      'always_bcc = copy@backup.invalid',
      `transport_maps = inline:{ { backup.invalid = smtp:[127.0.0.1]:${backup} } }`,
      'default_destination_concurrency_limit = 20',
    ],
  });
  const master = Number((await readFile(join(pf.dir, 'queue', 'pid', 'master.pid'), 'utf8')).trim());
  return {
    name: 'postfix',
    port: pf.port,
    async memory() {
      let sum = 0;
      for (const pid of await descendants(master)) sum += await pss(pid);
      return sum;
    },
    stop: () => pf.destroy(),
  };
}

const cgroup = await podMemoryLimit();

async function startRelayTarget(primary: number, backup: number, withRules = false): Promise<Target> {
  const relay = await startBenchRelay({
    primaryPort: primary,
    backupPort: backup,
    instance: 'bench',
    env: RELAY_PROCESS_ENV,
    tuning: { maxBacklog: 2_000 },
    ...(cgroup ? { cgroup } : {}),
    ...(withRules ? { policy: { exclude } } : {}),
  });
  return {
    name: withRules ? 'relay-rules' : 'relay',
    port: relay.port,
    memory: () => procStatus(relay.pid, 'VmRSS'),
    cpuMs: () => cpuMsOf(relay.pid),
    stop: () => relay.stop(),
  };
}

/** One client sending messages back to back; returns end-of-DATA -> 250 times in ms. */
function latencySampler(port: number, reuse: boolean, running: () => boolean): Promise<number[]> {
  const body = `Subject: latency sample\r\n\r\n${'x'.repeat(76)}\r\n`.repeat(Math.max(1, Math.floor(size / 105)));
  const times: number[] = [];
  let n = 0;
  const session = () =>
    new Promise<void>((resolve, reject) => {
      const s = connect(port, '127.0.0.1');
      let buf = '';
      const waiters: Array<(line: string) => void> = [];
      s.on('data', (c: Buffer) => {
        buf += c.toString('latin1');
        for (let i = buf.indexOf('\r\n'); i !== -1; i = buf.indexOf('\r\n')) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (/^\d{3} /.test(line)) waiters.shift()?.(line);
        }
      });
      s.on('error', reject);
      const reply = (expect: RegExp) =>
        new Promise<string>((res, rej) =>
          waiters.push((line) => (expect.test(line) ? res(line) : rej(new Error(`sampler: ${line}`)))),
        );
      void (async () => {
        try {
          await reply(/^220/);
          s.write('EHLO sampler.bench\r\n');
          await reply(/^250/);
          do {
            s.write(`MAIL FROM:<sampler@partner.example.net>\r\n`);
            await reply(/^250/);
            s.write(`RCPT TO:<sample${n++}@corp.example.com>\r\n`);
            await reply(/^250/);
            s.write('DATA\r\n');
            await reply(/^354/);
            s.write(`Message-ID: <sample${n}.${Date.now()}@bench>\r\n${body}.\r\n`);
            const t0 = performance.now();
            await reply(/^250/);
            times.push(performance.now() - t0);
          } while (reuse && running());
          s.end('QUIT\r\n');
          resolve();
        } catch (e) {
          s.destroy();
          reject(e as Error);
        }
      })();
    });
  return (async () => {
    while (running()) await session();
    return times;
  })();
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** Samples memory every 200 ms until stopped; returns the peak. */
function memoryPeak(t: Target): { stop(): Promise<number> } {
  let peak = 0;
  let on = true;
  const loop = (async () => {
    while (on) {
      peak = Math.max(peak, await t.memory());
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return {
    async stop() {
      on = false;
      await loop;
      return peak;
    },
  };
}

async function withSinks<T>(f: (a: SmtpSink, b: SmtpSink) => Promise<T>): Promise<T> {
  const a = await startSmtpSink({ backlog: 512 });
  const b = await startSmtpSink({ backlog: 512 });
  try {
    return await f(a, b);
  } finally {
    await a.stop();
    await b.stop();
  }
}

async function run(name: Name, sessions: number, reuse: boolean): Promise<Row> {
  return withSinks(async (primary, backup) => {
    const t = await (name === 'postfix'
      ? startPostfixTarget(primary.port, backup.port)
      : startRelayTarget(primary.port, backup.port, name === 'relay-rules'));
    try {
      const mem = memoryPeak(t);
      const cpu0 = (await t.cpuMs?.()) ?? 0;
      let loading = true;
      const sampler = latencySampler(t.port, reuse, () => loading);
      const t0 = Date.now();
      const src = await smtpSource({
        port: t.port,
        messages,
        sessions,
        to: 'user@corp.example.com',
        numberRecipients: true,
        length: size,
        reuseConnections: reuse,
        timeoutMs: 900_000,
      });
      const intakeMs = Date.now() - t0;
      loading = false;
      const samples = await sampler;
      const want = messages + samples.length;
      const deadline = Date.now() + 900_000;
      let counts: [number, number] = [0, 0];
      while (Date.now() < deadline) {
        counts = [await primary.count(), await backup.count()];
        if (counts[0] >= want && counts[1] >= want) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const e2eMs = Date.now() - t0;
      return {
        target: name,
        sessions,
        reuse,
        intakeMs,
        e2eMs,
        atSinks: counts,
        sampled: samples.length,
        p50: percentile(samples, 50),
        p99: percentile(samples, 99),
        peakMemory: await mem.stop(),
        ...(t.cpuMs ? { cpuMs: (await t.cpuMs()) - cpu0 } : {}),
        errors: src.stderr.trim().split('\n').filter(Boolean).slice(0, 2).join(' | '),
      };
    } finally {
      await t.stop();
    }
  });
}

/** Exchange stopped: the primary sink is not running; the backup copies still flow. */
async function runBacklog(
  name: Name,
): Promise<{ target: Name; intakeMs: number; peak: number; after: number; atBackup: number }> {
  const deadPort = await freePort();
  const backup = await startSmtpSink({ backlog: 512 });
  const t = await (name === 'postfix'
    ? startPostfixTarget(deadPort, backup.port)
    : startRelayTarget(deadPort, backup.port, name === 'relay-rules'));
  try {
    const mem = memoryPeak(t);
    const t0 = Date.now();
    const progress = setInterval(
      () =>
        void t
          .memory()
          .then((m) =>
            process.stderr.write(`  ${name} backlog: ${Math.round((Date.now() - t0) / 1000)} s, memory ${mb(m)} MB\n`),
          ),
      15_000,
    );
    await smtpSource({
      port: t.port,
      messages: backlog,
      sessions: 20,
      to: 'user@corp.example.com',
      numberRecipients: true,
      length: size,
      reuseConnections: true,
      timeoutMs: 1_800_000,
    });
    const intakeMs = Date.now() - t0;
    await backup.waitForCount(backlog, 900_000).catch(() => undefined);
    clearInterval(progress);
    await new Promise((r) => setTimeout(r, 5_000));
    const after = await t.memory();
    return { target: name, intakeMs, peak: await mem.stop(), after, atBackup: await backup.count() };
  } finally {
    await t.stop();
    await backup.stop();
  }
}

const mb = (b: number) => Math.round(b / (1024 * 1024));
const rate = (n: number, ms: number) => Math.round((n * 1000) / ms);

const rows: Row[] = [];
for (let round = 0; round < rounds; round++) {
  for (const reuse of reuseModes) {
    for (const sessions of sessionCounts) {
      // Alternate the order each round: neither target always runs on the warmer or the busier machine.
      for (const name of round % 2 === 0 ? targets : [...targets].reverse()) {
        const r = await run(name, sessions, reuse);
        rows.push(r);
        process.stderr.write(
          `round ${round + 1} ${name} sessions=${sessions} reuse=${reuse}: intake ${rate(messages, r.intakeMs)} msg/s, end to end ${rate(messages, r.e2eMs)} msg/s, ` +
            `p99 ${r.p99.toFixed(1)} ms (${r.sampled} samples), peak ${mb(r.peakMemory)} MB, sinks ${r.atSinks.join('/')}${r.cpuMs !== undefined ? `, relay CPU ${(r.cpuMs / (messages + r.sampled)).toFixed(2)} ms/msg` : ''} ${r.errors}\n`,
        );
      }
    }
  }
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const policyTable =
  targets.includes('relay') && targets.includes('relay-rules')
    ? [
        `The exclusion policy's cost: the relay without rules and with ${exclude.length} exclusion rules (header values, senders with From:/Sender:, recipients; none matching, so every message is evaluated in full and every copy goes), alternately, ${rounds} round(s); end to end msg/s per round, then the median ratio; and the relay's CPU time per message (user + system, which a loaded machine does not inflate the way it slows msg/s).`,
        '',
        '| reuse | sessions | no rules msg/s (per round) | rules msg/s (per round) | rules / no rules (per round) | median ratio | relay CPU ms/msg, no rules / rules (medians) | CPU ratio |',
        '|---|---:|---|---|---|---:|---:|---:|',
        ...reuseModes.flatMap((reuse) =>
          sessionCounts.map((sessions) => {
            const of = (n: Name) =>
              rows
                .filter((r) => r.target === n && r.sessions === sessions && r.reuse === reuse)
                .map((r) => rate(messages, r.e2eMs));
            const a = of('relay');
            const b = of('relay-rules');
            const ratios = a.map((x, i) => b[i]! / x);
            const cpu = (n: Name) =>
              median(
                rows
                  .filter((r) => r.target === n && r.sessions === sessions && r.reuse === reuse)
                  .map((r) => (r.cpuMs ?? NaN) / (messages + r.sampled)),
              );
            const [ca, cb] = [cpu('relay'), cpu('relay-rules')];
            return `| ${reuse ? 'yes' : 'no'} | ${sessions} | ${a.join(', ')} | ${b.join(', ')} | ${ratios.map((x) => x.toFixed(3)).join(', ')} | ${median(ratios).toFixed(3)} | ${ca.toFixed(2)} / ${cb.toFixed(2)} | ${(cb / ca).toFixed(3)} |`;
          }),
        ),
        '',
      ]
    : [];
const backlogRows = [];
if (backlog > 0) for (const name of targets) backlogRows.push(await runBacklog(name));

const lines = [
  '# Relay vs Postfix: dual delivery with fsync before 250',
  '',
  `${new Date().toISOString()}, ${cpus().length} CPU (${cpus()[0]?.model ?? '?'}), Node ${process.version}, spool and Postfix queue on ${tmpdir()}.`,
  `${messages} messages of ${size} bytes per run from smtp-source (-N: distinct recipients; "reuse" = -d, several messages per connection),`,
  'each target delivering every message to two smtp-sinks. End to end counts messages (each at both sinks).',
  `The relay runs with its pod's environment (${Object.entries(RELAY_PROCESS_ENV)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')}).`,
  cgroup
    ? "The relay runs in a memory cgroup with its pod's default limit (256 MiB), as in the pod; Postfix runs without one."
    : "No memory cgroup could be made here: the relay ran without its pod's memory limit (Node sizes its heap from the machine).",
  '',
  ...policyTable,
  ...(!targets.includes('postfix')
    ? []
    : [
        '| reuse | sessions | Postfix end to end msg/s | relay end to end msg/s | relay / Postfix | Postfix intake msg/s | relay intake msg/s | p99 accept ms (Postfix / relay) | peak memory MB (Postfix PSS / relay RSS) |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
        ...rows
          .filter((r) => r.target === 'postfix')
          .map((p) => {
            const r = rows.find((x) => x.target === 'relay' && x.sessions === p.sessions && x.reuse === p.reuse)!;
            const pe = rate(messages, p.e2eMs);
            const re = rate(messages, r.e2eMs);
            return `| ${p.reuse ? 'yes' : 'no'} | ${p.sessions} | ${pe} | ${re} | ${(re / pe).toFixed(2)} | ${rate(messages, p.intakeMs)} | ${rate(messages, r.intakeMs)} | ${p.p99.toFixed(1)} / ${r.p99.toFixed(1)} | ${mb(p.peakMemory)} / ${mb(r.peakMemory)} |`;
          }),
        '',
      ]),
  ...(backlogRows.length > 0
    ? [
        `Backlog: ${backlog} messages of ${size} bytes, 20 sessions with reuse, the primary's sink not running (Exchange stopped), backup copies delivered.`,
        '',
        '| target | intake msg/s | peak memory MB | memory MB 5 s after the backup copies | copies at the backup sink |',
        '|---|---:|---:|---:|---:|',
        ...backlogRows.map(
          (b) => `| ${b.target} | ${rate(backlog, b.intakeMs)} | ${mb(b.peak)} | ${mb(b.after)} | ${b.atBackup} |`,
        ),
        '',
      ]
    : []),
];
process.stdout.write(`${lines.join('\n')}\n`);
await writeFile(values.out, `${lines.join('\n')}\n`);
