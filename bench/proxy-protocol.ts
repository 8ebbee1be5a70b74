// What spec.relay.proxyProtocol costs: the same relay process taking mail
// side by side in one session, (a) straight from the client, (b) through
// Debian's HAProxy forwarding plain TCP (the balancer's hop alone), (c) and
// (d) through HAProxy sending the PROXY protocol v2 / v1 to a relay with
// proxyProtocol on. smtp-source opens one connection per message (no reuse),
// so every message pays for one header; the relay delivers to smtp-sink.
// Variants alternate over the rounds so that the machine's drift spreads over
// all of them.
//
//   node --import tsx bench/proxy-protocol.ts [--messages 2000] [--sessions 20] [--rounds 3]
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startHaproxy } from '../test/harness/haproxy.js';
import { freePort, waitForPort } from '../test/harness/postfix.js';
import { relayTestConfig, smtpSource, startSmtpSink } from '../test/harness/smtp-tools.js';

const { values } = parseArgs({ options: { messages: { type: 'string', default: '2000' }, sessions: { type: 'string', default: '20' }, rounds: { type: 'string', default: '3' } } });
const messages = Number(values.messages);
const sessions = Number(values.sessions);
const rounds = Number(values.rounds);

async function relayProcess(dir: string, sinkPort: number, proxyProtocol: boolean) {
  const port = await freePort();
  const config = relayTestConfig({
    spool: join(dir, `spool-${port}`),
    primaryPort: sinkPort,
    listenPort: port,
    instance: `bench-proxy-${proxyProtocol ? 'on' : 'off'}`,
    spec: { relay: { acceptFrom: ['127.0.0.0/8'], ...(proxyProtocol ? { proxyProtocol: { trustedProxies: ['127.0.0.1/32'] } } : {}) } },
    tuning: { maxClients: 1000, maxClientsPerAddress: 1000, minBackoffMs: 30_000, maxBackoffMs: 600_000, sweepIntervalMs: 5000 },
  });
  config.http.port = await freePort();
  const file = join(dir, `relay-${port}.json`);
  await writeFile(file, JSON.stringify(config));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'relay', '--config', file], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, NODE_OPTIONS: '' } });
  await waitForPort(port, 'up', 60_000);
  return {
    port,
    stop: async () => {
      child.kill('SIGTERM');
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    },
  };
}

const dir = await mkdtemp(join(tmpdir(), 'bench-proxy-'));
const sink = await startSmtpSink();
const plainRelay = await relayProcess(dir, sink.port, false);
const proxiedRelay = await relayProcess(dir, sink.port, true);
const plainHaproxy = await startHaproxy({ backendPort: plainRelay.port, dir: await mkdtemp(join(dir, 'hap-plain-')) });
const proxyHaproxy = await startHaproxy({ backendPort: proxiedRelay.port, dir: await mkdtemp(join(dir, 'hap-proxy-')) });

const variants: [string, number][] = [
  ['(a) client -> relay', plainRelay.port],
  ['(b) client -> HAProxy (plain TCP) -> relay', plainHaproxy.plainPort],
  ['(c) client -> HAProxy send-proxy-v2 -> relay with proxyProtocol', proxyHaproxy.v2Port],
  ['(d) client -> HAProxy send-proxy (v1) -> relay with proxyProtocol', proxyHaproxy.v1Port],
];
const results = new Map<string, number[]>(variants.map(([name]) => [name, []]));
try {
  let delivered = 0;
  for (let round = 1; round <= rounds; round++) {
    for (const [name, port] of variants) {
      const r = await smtpSource({ port, messages, sessions, to: 'alice@corp.example.com', length: 2000, timeoutMs: 600_000 });
      if (r.code !== 0) throw new Error(`${name}: smtp-source exited ${r.code}: ${r.stderr.slice(0, 500)}`);
      delivered += messages;
      await sink.waitForCount(delivered, 300_000);
      const rate = messages / (r.elapsedMs / 1000);
      results.get(name)!.push(rate);
      console.log(`round ${round} ${name}: ${rate.toFixed(0)} msg/s accepted (${r.elapsedMs} ms)`);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`\n${messages} messages x ${rounds} rounds, ${sessions} sessions, one connection per message; median accepted msg/s:`);
  for (const [name, xs] of results) console.log(`  ${name}: ${median(xs).toFixed(0)}  (runs: ${xs.map((x) => x.toFixed(0)).join(', ')})`);
} finally {
  await plainHaproxy.stop();
  await proxyHaproxy.stop();
  await plainRelay.stop();
  await proxiedRelay.stop();
  await sink.stop();
  await rm(dir, { recursive: true, force: true });
}
