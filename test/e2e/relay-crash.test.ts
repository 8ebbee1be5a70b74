// Durability: the relay process (src/relay/main.ts) is SIGKILLed in the middle
// of an smtp-source run; after a restart every message it acknowledged reaches
// Postfix. A message can reach Postfix twice only if its delivery was in flight
// at the kill (SMTP has no idempotent delivery: Postfix has the same window);
// the restarted relay names every such message in its log, and the test holds
// it to that.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSpoolDir } from '../../src/relay/spool/read.js';
import { freePort, startPostfix, waitForPort, type PostfixInstance } from '../harness/postfix.js';
import { relayTestConfig, smtpSource, TEST_DOMAINS } from '../harness/smtp-tools.js';
import { spawnRelayProcess, type RelayProcess } from '../harness/relay-process.js';
import { startTcpProxy } from '../harness/tcp-proxy.js';
import { waitUntil } from '../harness/wait.js';

/** The relay process (harness/relay-process.ts); its stderr goes to the test's when it exits with an error. */
function spawnRelay(configFile: string): RelayProcess {
  const relay = spawnRelayProcess(configFile);
  void relay.exited.then((code) => {
    if (code) process.stderr.write(`relay exited ${code}: ${relay.stderr()}\n`);
  });
  return relay;
}

let postfix: PostfixInstance;
let dir: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-crash-'));
  postfix = await startPostfix({ domains: TEST_DOMAINS });
}, 60_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await postfix?.destroy();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe('relay crash safety', () => {
  it('SIGKILL during a 2,000-message smtp-source run: after restart every acknowledged message is at Postfix, duplicates only for logged in-flight deliveries', async () => {
    const total = 2000;
    const killAfter = 600;
    // A slow Exchange (replies held 20 ms): intake outruns delivery, so the kill finds a backlog in the spool.
    const concurrency = 4;
    const slowExchange = await startTcpProxy({ port: await freePort(), targetPort: postfix.port, replyDelayMs: 20 });
    const smtpPort = await freePort();
    const spool = join(dir, 'spool');
    const config = relayTestConfig({
      spool,
      primaryPort: slowExchange.port,
      instance: 'crash-test',
      listenPort: smtpPort,
      tuning: { minBackoffMs: 200, maxBackoffMs: 1000, sweepIntervalMs: 500, primaryConcurrency: concurrency, maxBacklog: 100_000 },
    });
    const configFile = join(dir, 'relay.json');
    await writeFile(configFile, JSON.stringify(config));

    const first = spawnRelay(configFile);
    children.push(first.proc);
    await waitUntil('relay ready', 60_000, () => first.lines.some((l) => l.event === 'ready'));
    await waitForPort(smtpPort, 'up', 10_000);

    const load = smtpSource({ port: smtpPort, messages: total, sessions: 10, to: 'user@corp.example.com', numberRecipients: true, timeoutMs: 180_000 });
    const queuedBy = (p: RelayProcess) => p.lines.filter((l) => l.msg === 'queued');
    await waitUntil(`${killAfter} messages queued`, 180_000, () => queuedBy(first).length >= killAfter);
    first.proc.kill('SIGKILL');
    await first.exited;
    const src = await load;
    const acknowledged = new Set(queuedBy(first).map((l) => String(l.messageId)));
    expect(acknowledged.size).toBeGreaterThanOrEqual(killAfter);
    expect(acknowledged.size).toBeLessThan(total); // the kill really interrupted the run
    expect(src.timedOut).toBe(false);
    // What the restarted relay will find: committed messages, including any whose 250 the kill cut off.
    const onDisk = new Set((await readSpoolDir(spool, 'queue')).map((s) => String(s.messageId)));

    const second = spawnRelay(configFile);
    children.push(second.proc);
    await waitUntil('relay ready again', 60_000, () => second.lines.some((l) => l.event === 'ready'));
    const resumed = second.lines.find((l) => l.msg === 'resumed from the spool');
    expect(Number(resumed?.messages ?? 0)).toBeGreaterThan(0); // the kill left work to resume
    await waitUntil('spool queue empty', 180_000, async () => (await readdir(join(spool, 'queue'))).length === 0);
    await waitUntil('postfix has every acknowledged message', 120_000, async () => {
      const counts = await postfix.countByMessageId();
      return [...acknowledged].every((id) => (counts.get(id) ?? 0) >= 1);
    });
    second.proc.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    await slowExchange.stop();

    const counts = await postfix.countByMessageId();
    const missing = [...acknowledged].filter((id) => !counts.has(id));
    expect(missing).toEqual([]);
    // Nothing at Postfix that the relay did not commit. A message committed but killed before its
    // 250 (and its log line) is delivered too: the sender will retry it, the same window as Postfix's.
    const unacknowledged = [...counts.keys()].filter((id) => !acknowledged.has(id));
    for (const id of unacknowledged) expect(onDisk.has(id)).toBe(true);
    expect(unacknowledged.length).toBeLessThanOrEqual(10);
    const inFlight = new Set(
      second.lines
        .filter((l) => l.msg === 'delivery was in flight when the relay stopped; retrying (the destination may receive it twice)')
        .map((l) => String(l.messageId)),
    );
    const duplicated = [...counts].filter(([, c]) => c > 1).map(([id]) => id);
    for (const id of duplicated) expect(inFlight.has(id)).toBe(true);
    expect(duplicated.length).toBeLessThanOrEqual(concurrency);
    expect(Math.max(...counts.values())).toBeLessThanOrEqual(2);
    process.stdout.write(
      `crash test: ${acknowledged.size} acknowledged before SIGKILL, ${Number(resumed?.messages ?? 0)} resumed from the spool, ` +
        `${inFlight.size} in flight at the kill, ${duplicated.length} delivered twice, ${unacknowledged.length} committed without a 250, 0 lost\n`,
    );
  }, 600_000);

  it('SIGKILL with the primary down: the whole spooled backlog survives and reaches Postfix exactly once after restart', async () => {
    const total = 1000;
    const killAfter = 400;
    const smtpPort = await freePort();
    const spool = join(dir, 'spool-down');
    const config = relayTestConfig({
      spool,
      primaryPort: postfix.port,
      instance: 'crash-down',
      listenPort: smtpPort,
      tuning: { minBackoffMs: 200, maxBackoffMs: 1000, sweepIntervalMs: 500, maxBacklog: 100_000 },
    });
    const configFile = join(dir, 'relay-down.json');
    await writeFile(configFile, JSON.stringify(config));
    const before = await postfix.countByMessageId();
    await postfix.stop();
    let acknowledged = new Set<string>();
    try {
      const first = spawnRelay(configFile);
      children.push(first.proc);
      await waitUntil('relay ready', 60_000, () => first.lines.some((l) => l.event === 'ready'));
      const load = smtpSource({ port: smtpPort, messages: total, sessions: 10, to: 'user@example.org', numberRecipients: true, timeoutMs: 180_000 });
      await waitUntil(`${killAfter} messages queued`, 180_000, () => first.lines.filter((l) => l.msg === 'queued').length >= killAfter);
      first.proc.kill('SIGKILL');
      await first.exited;
      await load;
      acknowledged = new Set(first.lines.filter((l) => l.msg === 'queued').map((l) => String(l.messageId)));
      const onDisk = new Set((await readSpoolDir(spool, 'queue')).map((s) => String(s.messageId)));
      for (const id of acknowledged) expect(onDisk.has(id)).toBe(true);
    } finally {
      await postfix.start();
    }
    const second = spawnRelay(configFile);
    children.push(second.proc);
    await waitUntil('relay ready again', 60_000, () => second.lines.some((l) => l.event === 'ready'));
    await waitUntil('spool queue empty', 180_000, async () => (await readdir(join(spool, 'queue'))).length === 0);
    // Postfix's own delivery into the Maildirs trails its 250 to the relay.
    await waitUntil('postfix has every acknowledged message', 120_000, async () => {
      const c = await postfix.countByMessageId();
      return [...acknowledged].every((id) => (c.get(id) ?? 0) >= 1);
    });
    second.proc.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    const counts = await postfix.countByMessageId();
    const fresh = [...counts].filter(([id]) => !before.has(id));
    for (const id of acknowledged) expect(counts.get(id)).toBe(1);
    // Only committed messages arrive, each once (nothing was in flight at a server that was down).
    expect(fresh.every(([, c]) => c === 1)).toBe(true);
    expect(fresh.length - acknowledged.size).toBeLessThanOrEqual(10);
    process.stdout.write(`crash test (primary down): ${acknowledged.size} acknowledged, ${fresh.length} delivered after restart, all once\n`);
  }, 600_000);
});
