// Profiles the relay (as built, dist/) under one smtp-source load, delivering to two smtp-sinks.
//   node --import tsx bench/profile-relay.ts [--messages 5000] [--sessions 20] [--reuse yes] [--prof DIR]
import { parseArgs } from 'node:util';
import { smtpSource, startSmtpSink } from '../test/harness/smtp-tools.js';
import { startBenchRelay } from './relay-process.js';

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
const relay = await startBenchRelay({
  primaryPort: a.port,
  backupPort: b.port,
  instance: 'prof',
  env: { NODE_OPTIONS: '' },
  tuning: { maxBacklog: 100_000 },
  nodeArgs: [...values.node.split(' ').filter(Boolean), ...(values.prof ? ['--cpu-prof', '--cpu-prof-dir', values.prof] : [])],
});
const port = relay.port;
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
await relay.stop();
await a.stop();
await b.stop();
