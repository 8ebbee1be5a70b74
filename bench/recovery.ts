// Recovery latency benchmark (issue 16 item 5; not a test): the relay with its
// production timers (backoff 30 s growing to 600 s) in front of Postfix (the
// Exchange stand-in). Postfix stops; M messages arrive during the outage
// (smtp-source, -N: distinct recipients) and wait; R seconds into the outage
// the relay restarts on its spool (the kill-and-outage run of the issue: the
// spool keeps each message's backoff); after O seconds Postfix starts again. Measured from Postfix's Maildir times: from the first delivery
// after the outage (Exchange answering) to the last one (the queue empty).
// Run from each tree to compare code versions: the relay runs in this process
// from the tree the script is in.
//
//   node --import tsx bench/recovery.ts [--messages 200] [--outage 45] [--restart-at 30] [--runs 1]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { startRelay } from '../src/relay/relay.js';
import { maildirArrivalMs } from '../test/harness/arrivals.js';
import { startPostfix } from '../test/harness/postfix.js';
import { relayTestConfig, smtpSource } from '../test/harness/smtp-tools.js';
import { waitUntil } from '../test/harness/wait.js';

const { values } = parseArgs({
  options: { messages: { type: 'string', default: '200' }, outage: { type: 'string', default: '45' }, 'restart-at': { type: 'string', default: '30' }, runs: { type: 'string', default: '1' } },
});
const MESSAGES = Number(values.messages);
const OUTAGE_MS = Number(values.outage) * 1000;
const RESTART_MS = Number(values['restart-at']) * 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function run(i: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-recovery-'));
  const postfix = await startPostfix({ domains: ['corp.example.com', 'example.org'] });
  const start = () =>
    startRelay(
      relayTestConfig({
        spool: join(dir, 'spool'),
        primaryPort: postfix.port,
        instance: `recovery-${i}`,
        tuning: { minBackoffMs: 30_000, maxBackoffMs: 600_000, sweepIntervalMs: 5_000, maxClientsPerAddress: 1_000 },
      }),
      { log: pino({ level: 'silent' }) },
    );
  let relay = await start();
  try {
    await postfix.stop();
    const stopped = Date.now();
    const sent = await smtpSource({ port: relay.smtpPort, messages: MESSAGES, sessions: 5, to: 'user@corp.example.com', numberRecipients: true, timeoutMs: 120_000 });
    if (sent.code !== 0) throw new Error(`smtp-source: ${sent.stderr}`);
    await waitUntil('every message in the spool', 60_000, () => relay.scheduler.size === MESSAGES);
    // The outage goes on (a wall-clock outage, what the benchmark is about), with a restart of the relay.
    await sleep(Math.max(0, RESTART_MS - (Date.now() - stopped)));
    await relay.stop();
    relay = await start();
    await waitUntil('the spool loaded', 60_000, () => relay.scheduler.size === MESSAGES);
    await sleep(Math.max(0, OUTAGE_MS - (Date.now() - stopped)));
    let latestOwnRetry = 0;
    for (const st of relay.scheduler.states()) latestOwnRetry = Math.max(latestOwnRetry, st.deliveries.primary?.nextAttemptAt ?? 0);
    await postfix.start();
    const back = Date.now();
    await waitUntil('queue empty', 15 * 60_000, () => relay.scheduler.size === 0);
    const msgs = await postfix.waitFor((m) => m.length >= MESSAGES, 60_000, 'every message at Postfix');
    const times = (await Promise.all(msgs.map((m) => maildirArrivalMs(m.file)))).sort((a, b) => a - b);
    const first = times[0]!;
    const last = times[times.length - 1]!;
    console.log(
      `run ${i}: ${MESSAGES} messages, outage ${(OUTAGE_MS / 1000).toFixed(0)} s, relay restarted at ${(RESTART_MS / 1000).toFixed(0)} s; Postfix answering -> first delivery ${((first - back) / 1000).toFixed(1)} s (the probe); ` +
        `first -> last delivery (queue empty) ${((last - first) / 1000).toFixed(2)} s; the latest own retry was due ${((latestOwnRetry - back) / 1000).toFixed(1)} s after Postfix came back`,
    );
  } finally {
    await relay.stop().catch(() => undefined);
    await postfix.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}

for (let i = 1; i <= Number(values.runs); i++) await run(i);
