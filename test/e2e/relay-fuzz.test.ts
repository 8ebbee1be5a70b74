// A bounded fuzz run (issue 15, item 7): grammar-aware SMTP sessions
// (test/harness/smtp-fuzz.ts) against the relay process for 20 s, eight at a
// time, Exchange down so every accepted message stays in the spool. After it:
// the process is alive and within a pod's memory, every reply was well-formed,
// every message answered "250 queued as ID" is in the spool with a valid
// trailer, and a normal client still gets 250. The seed is printed (FUZZ_SEED
// replays it); bench/smtp-fuzz.ts runs longer.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSpoolDir } from '../../src/relay/spool/read.js';
import { freePort } from '../harness/controlplane.js';
import { processMemory, relayPid, startRelayProcess, stopRelayProcess, type RelayProcess } from '../harness/relay-process.js';
import { fuzzSmtp } from '../harness/smtp-fuzz.js';
import { relayTestConfig, swaks } from '../harness/smtp-tools.js';

let dir: string;
let relay: RelayProcess | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-fuzz-'));
});

afterAll(async () => {
  await stopRelayProcess(relay);
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe('SMTP fuzz run', () => {
  it('20 s of grammar-aware sessions: no crash, bounded memory, well-formed replies, no accepted message lost', async () => {
    const port = await freePort();
    const spool = join(dir, 'spool');
    const config = relayTestConfig({
      spool,
      primaryPort: await freePort(), // Exchange down: accepted mail stays in the spool
      instance: 'fuzz',
      listenPort: port,
      spec: { policy: { maxMessageBytes: 1_000_000 } },
      tuning: { maxClientsPerAddress: 1000, maxLineLength: 8192 },
    });
    relay = await startRelayProcess(config, dir);
    const pid = await relayPid(relay);
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
    const result = await fuzzSmtp({ port, seconds: Number(process.env.FUZZ_SECONDS ?? 20), parallel: 8, seed });
    const mem = await processMemory(pid);
    process.stderr.write(
      `fuzz seed ${seed}: ${result.sessions} sessions, ${result.commands} commands, ${result.replies} replies, ${result.queued.length} queued, codes ${JSON.stringify(result.codes)}, relay peak RSS ${(mem.peak / 2 ** 20).toFixed(0)} MiB\n`,
    );
    expect(result.violations).toEqual([]);
    expect(relay.proc.exitCode).toBeNull();
    expect(result.sessions).toBeGreaterThan(50);
    expect(result.queued.length).toBeGreaterThan(0); // the grammar does reach accepted messages
    expect(mem.peak).toBeLessThan(256 * 2 ** 20);
    const ok = await swaks({ port, to: 'alice@corp.example.com', headers: ['Message-ID: <after-fuzz@partner.example.net>'] });
    expect(ok.code).toBe(0);
    await stopRelayProcess(relay);
    const onDisk = new Set((await readSpoolDir(spool, 'queue')).map((s) => s.id));
    expect(result.queued.filter((id) => !onDisk.has(id))).toEqual([]);
  }, 120_000);
});
