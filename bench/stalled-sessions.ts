// Memory of the relay process holding sessions stalled in the middle of DATA
// (issue 15, item 1), side by side with a peer revision in the same run:
//   node --import tsx bench/stalled-sessions.ts [--peer REV] [--sessions 500] [--body 200000] [--rounds 2]
// Each round starts this tree's relay and the peer's (git archive REV, the same
// node_modules) one after the other, opens SESSIONS sessions from five loopback
// addresses, each sending BODY bytes of a message and then nothing, and reads
// the relay process's VmRSS / VmHWM (/proc) and heap / external memory (its
// /metrics) 1 s and 10 s after the last one stalled.
import { execSync } from 'node:child_process';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../test/harness/controlplane.js';
import { processMemory, relayPid, startRelayProcess, stopRelayProcess } from '../test/harness/relay-process.js';
import type { RelayConfig } from '../src/api/relay/config.js';
import { RawSmtp } from '../test/harness/smtp-tools.js';

const { values } = parseArgs({
  options: {
    peer: { type: 'string', default: '0b5427b^' },
    sessions: { type: 'string', default: '500' },
    body: { type: 'string', default: '200000' },
    rounds: { type: 'string', default: '2' },
  },
});
const sessions = Number(values.sessions);
const body = Number(values.body);
const MiB = 2 ** 20;

async function run(tree: string, label: string, work: string): Promise<Record<string, string | number>> {
  const port = await freePort();
  const httpPort = await freePort();
  // The config as written by hand (each tree fills its own defaults: the schemas are strict).
  const cfg = {
    instance: label.replace(/[^a-z0-9]+/gi, '-'),
    spec: {
      domains: ['corp.example.com'],
      mode: 'FailoverOnly',
      primary: { host: '127.0.0.1', port: 9, tls: 'None' },
      backup: { gmail: { method: 'SmtpRelay', smtpRelay: { host: '127.0.0.1', port: 9 }, addressMap: [{ from: '@corp.example.com', to: '@corp.example.org' }] } },
      relay: { acceptFrom: ['127.0.0.0/8'] },
      failover: { messageDeadline: '15m' },
    },
    listen: { host: '127.0.0.1', port, hostname: 'relay.test' },
    http: { host: '127.0.0.1', port: httpPort },
    paths: { spool: join(work, `spool-${Date.now()}`) },
    tuning: { maxClients: sessions + 100, maxClientsPerAddress: sessions, spoolMinFreeBytes: 0 },
  };
  const p = await startRelayProcess(cfg as unknown as RelayConfig, work, (f) => [process.execPath, '--import', 'tsx', join(tree, 'src/relay/main.ts'), '--config', f]);
  const pid = await relayPid(p);
  const metrics = async () => {
    const t = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    const g = (k: string) => Number(new RegExp(`^${k}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(t)?.[1] ?? NaN) / MiB;
    return { heap: g('nodejs_heap_size_used_bytes'), external: g('nodejs_external_memory_bytes') };
  };
  const start = await processMemory(pid);
  const line = `${'x'.repeat(998)}\r\n`;
  const data = `Subject: stalled\r\n\r\n${line.repeat(Math.ceil(body / line.length))}`;
  const socks: RawSmtp[] = [];
  for (let i = 0; i < sessions; i += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, sessions - i) }, async (_, j) => {
        const s = await RawSmtp.open(port, 30_000, `127.0.0.${1 + ((i + j) % 5)}`);
        socks.push(s);
        await s.reply(30_000);
        for (const c of ['EHLO bench', 'MAIL FROM:<a@partner.example.net>', 'RCPT TO:<alice@corp.example.com>', 'DATA']) await s.cmd(c, 30_000);
        s.write(data);
      }),
    );
  }
  await new Promise((r) => setTimeout(r, 1_000));
  const at1 = { ...(await processMemory(pid)), ...(await metrics()) };
  await new Promise((r) => setTimeout(r, 9_000));
  const at10 = { ...(await processMemory(pid)), ...(await metrics()) };
  for (const s of socks) s.close();
  await stopRelayProcess(p);
  return {
    relay: label,
    'RSS start': (start.rss / MiB).toFixed(0),
    'RSS 1 s': (at1.rss / MiB).toFixed(0),
    'RSS 10 s': (at10.rss / MiB).toFixed(0),
    peak: (at10.peak / MiB).toFixed(0),
    'external 10 s': at10.external.toFixed(0),
    'heap 10 s': at10.heap.toFixed(0),
  };
}

const work = await mkdtemp(join(tmpdir(), 'bench-stalled-'));
const peerTree = join(work, 'peer');
execSync(`mkdir -p ${peerTree} && git archive ${values.peer} | tar -x -C ${peerTree}`);
await symlink(join(process.cwd(), 'node_modules'), join(peerTree, 'node_modules'));
const rows: Array<Record<string, string | number>> = [];
for (let r = 0; r < Number(values.rounds); r++) {
  rows.push(await run(peerTree, `peer ${values.peer}`, work));
  rows.push(await run(process.cwd(), 'this tree', work));
}
console.log(`${sessions} sessions stalled mid-DATA after ${body} bytes each; MiB; load ${execSync('cat /proc/loadavg').toString().trim()}`);
console.table(rows);
await rm(work, { recursive: true, force: true });
