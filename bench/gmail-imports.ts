// The backup path at Google's pace (issue 16 item 6; not a test): the relay
// (its own process, from the tree given with --root, production timers and
// defaults) in an outage (FailoverOnly with spec.failover.manual: Active, the
// primary a closed port) copies M messages to M distinct mailboxes through the
// Gmail API, answered by the emulator (in this process) after a fixed latency
// per call (token grants too). Imports/s are read from the emulator's own
// times (when each import was stored): overall (first to last) and steady (the
// least-squares slope after the first 10 %), against Google's ceiling for this
// load (one import per mailbox: the project's 800/s).
//
//   node --import tsx bench/gmail-imports.ts [--root DIR]... [--messages 1500] [--latency 0,300,800] [--replicas 1]
// Several --root: each tree in turn per latency (side by side in one run).
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { steadyRate } from '../test/harness/arrivals.js';
import { startGmailEmulator } from '../test/harness/gmail-emulator.js';
import { freePort, waitForPort } from '../test/harness/postfix.js';
import { smtpSource } from '../test/harness/smtp-tools.js';
import { waitFor } from '../test/harness/wait.js';

const { values } = parseArgs({
  options: {
    root: { type: 'string', multiple: true, default: ['.'] },
    messages: { type: 'string', default: '1500' },
    latency: { type: 'string', default: '0,300,800' },
    replicas: { type: 'string', default: '1' },
  },
});
const MESSAGES = Number(values.messages);
const PROJECT_CEILING = 800;

async function measure(root: string, latencyMs: number): Promise<string> {
  const users = Array.from({ length: MESSAGES }, (_, i) => `${i + 1}u@corp.example.org`);
  const emu = await startGmailEmulator({ users, latencyMs });
  const dir = await mkdtemp(join(tmpdir(), 'bench-gmail-'));
  const keyFile = join(dir, 'sa.json');
  await writeFile(keyFile, emu.serviceAccount.keyJson);
  const port = await freePort();
  const config = {
    instance: 'bench-gmail',
    spec: {
      domains: ['corp.example.com'],
      mode: 'FailoverOnly',
      primary: { host: '127.0.0.1', port: await freePort(), tls: 'None' },
      backup: { gmail: { method: 'GmailApi', serviceAccountSecretRef: { name: 'gmail-sa' }, addressMap: [{ from: '@corp.example.com', to: '@corp.example.org' }] } },
      relay: { acceptFrom: ['127.0.0.0/8'], replicas: Number(values.replicas) },
      failover: { manual: 'Active', messageDeadline: '15m' },
    },
    listen: { host: '127.0.0.1', port, hostname: 'relay.bench' },
    http: { host: '127.0.0.1', port: 0 },
    paths: { spool: join(dir, 'spool'), gmailServiceAccount: keyFile },
    google: { rootUrl: emu.rootUrl, tokenUrl: emu.tokenUrl },
    tuning: { maxClientsPerAddress: 1_000 },
  };
  await writeFile(join(dir, 'relay.json'), JSON.stringify(config));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'relay', '--config', join(dir, 'relay.json')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    await waitForPort(port, 'up', 60_000);
    const started = Date.now();
    const sent = await smtpSource({ port, messages: MESSAGES, sessions: 10, to: 'u@corp.example.com', numberRecipients: true, reuseConnections: true, timeoutMs: 300_000 });
    if (sent.code !== 0) throw new Error(`smtp-source: ${sent.stderr}`);
    const stored = () => users.reduce((n, u) => n + emu.messages(u).length, 0);
    await waitFor('every import', () => stored() >= MESSAGES, 30 * 60_000, 500);
    const times = users.flatMap((u) => emu.messages(u).map((m) => m.storedAt)).sort((a, b) => a - b);
    const overall = (times.length - 1) / ((times[times.length - 1]! - times[0]!) / 1000);
    const steady = steadyRate(times, Math.floor(times.length / 10)) ?? 0;
    const gmailCalls = emu.requests.filter((r) => r.path.includes('/gmail/')).length;
    const tokenCalls = emu.requests.filter((r) => r.path === '/token').length;
    return `| ${root} | ${latencyMs} | ${overall.toFixed(1)} | ${steady.toFixed(1)} | ${((100 * steady) / PROJECT_CEILING).toFixed(1)} % | ${((Date.now() - started) / 1000).toFixed(0)} | ${gmailCalls + tokenCalls} | ${emu.connections()} |`;
  } finally {
    child.kill('SIGTERM');
    if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    await emu.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const rows: string[] = [];
for (const latency of values.latency.split(',').map(Number)) {
  for (const root of values.root) {
    const row = await measure(resolve(root), latency);
    console.log(row);
    rows.push(row);
  }
}
console.log(
  [
    `${MESSAGES} messages to ${MESSAGES} mailboxes; ceiling ${PROJECT_CEILING} imports/s (the project quota; 10/s per mailbox does not bind with one import each)`,
    '| tree | latency ms | imports/s overall | imports/s steady | of ceiling | s from first SMTP to last import | HTTP calls | TCP connections |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n'),
);
