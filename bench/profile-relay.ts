// Profiles the relay (as built, dist/) under one smtp-source load, delivering to two smtp-sinks.
//   node --import tsx bench/profile-relay.ts [--messages 5000] [--sessions 20] [--reuse yes] [--prof DIR]
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, waitForPort } from '../test/harness/postfix.js';
import { relayTestConfig, smtpSource, startSmtpSink } from '../test/harness/smtp-tools.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '5000' },
    node: { type: 'string', default: '' },
    sessions: { type: 'string', default: '20' },
    reuse: { type: 'string', default: 'yes' },
    size: { type: 'string', default: '10240' },
    prof: { type: 'string' },
  },
});
const messages = Number(values.messages);
const a = await startSmtpSink({ backlog: 512 });
const b = await startSmtpSink({ backlog: 512 });
const dir = await mkdtemp(join(tmpdir(), 'prof-relay-'));
const port = await freePort();
const config = relayTestConfig({
  spool: join(dir, 'spool'),
  primaryPort: a.port,
  backupPort: b.port,
  listenPort: port,
  instance: 'prof',
  spec: { mode: 'DualDelivery' },
  tuning: {
    minBackoffMs: 30_000,
    maxBackoffMs: 600_000,
    sweepIntervalMs: 5_000,
    maxBacklog: 100_000,
    primaryConcurrency: 20,
    backupConcurrency: 20,
    greetingDelay: false,
    maxClients: 1_000,
    maxClientsPerAddress: 1_000,
  },
});
await writeFile(join(dir, 'relay.json'), JSON.stringify(config));
const args = [...values.node.split(' ').filter(Boolean), 
  ...(values.prof ? ['--cpu-prof', '--cpu-prof-dir', values.prof] : []),
  'dist/src/cli.js',
  'relay',
  '--config',
  join(dir, 'relay.json'),
];
const child = spawn(process.execPath, args, {
  stdio: ['ignore', 'ignore', 'inherit'],
  env: { ...process.env, NODE_OPTIONS: '' },
});
await waitForPort(port, 'up', 60_000);
const t0 = Date.now();
const src = await smtpSource({
  port,
  messages,
  sessions: Number(values.sessions),
  to: 'user@corp.example.com',
  numberRecipients: true,
  length: Number(values.size),
  reuseConnections: values.reuse === 'yes',
  timeoutMs: 900_000,
});
const intake = Date.now() - t0;
await a.waitForCount(messages, 600_000);
await b.waitForCount(messages, 600_000);
const e2e = Date.now() - t0;
console.log(
  `intake ${Math.round((messages * 1000) / intake)} msg/s, end to end ${Math.round((messages * 1000) / e2e)} msg/s ${src.stderr.slice(0, 200)}`,
);
child.kill('SIGINT');
await new Promise((r) => child.once('exit', r));
await a.stop();
await b.stop();
await rm(dir, { recursive: true, force: true });
