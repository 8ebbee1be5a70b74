// Where the relay's memory goes with a backlog: N messages accepted with the primary down.
//   node --import tsx bench/backlog-memory.ts [--messages 50000]
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { RELAY_PROCESS_ENV } from '../src/operator/builders/statefulset.js';
import { freePort } from '../test/harness/postfix.js';
import { smtpSource, startSmtpSink } from '../test/harness/smtp-tools.js';
import { startBenchRelay } from './relay-process.js';

const { values } = parseArgs({ options: { messages: { type: 'string', default: '50000' }, node: { type: 'string', default: '' }, cgroup: { type: 'string', default: '' } } });
const messages = Number(values.messages);
const b = await startSmtpSink({ backlog: 512 });
const relay = await startBenchRelay({
  primaryPort: await freePort(),
  backupPort: b.port,
  instance: 'mem',
  env: { ...RELAY_PROCESS_ENV, ...(process.env.NO_MALLOC_ENV ? { MALLOC_ARENA_MAX: '', MALLOC_TRIM_THRESHOLD_: '' } : {}) },
  nodeArgs: values.node.split(' ').filter(Boolean),
  ...(values.cgroup ? { cgroup: values.cgroup } : {}),
});
const { port, httpPort, pid } = relay;
let peak = 0;
let atPeak = '';
const sampler = setInterval(
  () =>
    void (async () => {
      const rss = Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
      if (rss <= peak) return;
      peak = rss;
      const mm = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
      const mb = (name: string) => Math.round(Number(new RegExp(`^${name} (\\S+)`, 'm').exec(mm)?.[1]) / 1048576);
      atPeak = `heap used ${mb('nodejs_heap_size_used_bytes')} MB of ${mb('nodejs_heap_size_total_bytes')} MB, external ${mb('nodejs_external_memory_bytes')} MB`;
    })().catch(() => undefined),
  200,
);
await smtpSource({ port, messages, sessions: 20, to: 'user@corp.example.com', numberRecipients: true, length: 10240, reuseConnections: true, timeoutMs: 900_000 });
await b.waitForCount(messages, 600_000);
clearInterval(sampler);
console.log(`peak rss during intake ${Math.round(peak)} MB (${atPeak})`);
for (const wait of [0, 5, 10, 20, 30]) {
  await new Promise((r) => setTimeout(r, wait * 1000));
  const mm = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const heap = Number(/^nodejs_heap_size_used_bytes (\S+)/m.exec(mm)?.[1]) / 1048576;
  const r = Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
  console.log(`+${wait}s heap used ${Math.round(heap)} MB, rss ${Math.round(r)} MB`);
}
const m = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
const rss = Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
for (const l of m.split('\n')) if (/^(nodejs_heap_size_used_bytes|nodejs_heap_size_total_bytes|nodejs_external_memory_bytes|process_resident_memory_bytes|relay_queue_depth)/.test(l)) console.log(l);
console.log(`rss ${Math.round(rss)} MB`);
if (process.env.SNAPSHOT) {
  process.kill(pid, 'SIGUSR2');
  await new Promise((r) => setTimeout(r, 20_000));
}
await relay.stop();
await b.stop();
