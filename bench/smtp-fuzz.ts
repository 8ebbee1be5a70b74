// The SMTP fuzz run of test/e2e/relay-fuzz.test.ts, longer:
//   node --import tsx bench/smtp-fuzz.ts [--seconds 300] [--parallel 8] [--seed N]
// Against the relay process (Exchange down: accepted mail stays in the spool); prints the counts,
// the reply codes, the relay's peak RSS, the violations, and the accepted messages missing from
// the spool (both must be none).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { readSpoolDir } from '../src/relay/spool/read.js';
import { freePort } from '../test/harness/controlplane.js';
import { processMemory, relayPid, startRelayProcess, stopRelayProcess } from '../test/harness/relay-process.js';
import { fuzzSmtp } from '../test/harness/smtp-fuzz.js';
import { relayTestConfig } from '../test/harness/smtp-tools.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '300' }, parallel: { type: 'string', default: '8' }, seed: { type: 'string' } } });
const dir = await mkdtemp(join(tmpdir(), 'bench-fuzz-'));
const port = await freePort();
const spool = join(dir, 'spool');
const config = relayTestConfig({ spool, primaryPort: await freePort(), instance: 'fuzz', listenPort: port, spec: { policy: { maxMessageBytes: 1_000_000 } }, tuning: { maxClientsPerAddress: 1000, maxLineLength: 8192 } });
const relay = await startRelayProcess(config, dir);
const pid = await relayPid(relay);
const seed = Number(values.seed ?? Date.now() % 1_000_000);
const result = await fuzzSmtp({ port, seconds: Number(values.seconds), parallel: Number(values.parallel), seed });
const mem = await processMemory(pid);
const alive = relay.proc.exitCode === null;
await stopRelayProcess(relay);
const onDisk = new Set((await readSpoolDir(spool, 'queue')).map((s) => s.id));
const lost = result.queued.filter((id) => !onDisk.has(id));
console.log(
  JSON.stringify({ seed, seconds: Number(values.seconds), sessions: result.sessions, commands: result.commands, replies: result.replies, queued: result.queued.length, codes: result.codes, peakRssMiB: Math.round(mem.peak / 2 ** 20), alive, violations: result.violations, lost }, null, 1),
);
await rm(dir, { recursive: true, force: true });
process.exit(result.violations.length || lost.length || !alive ? 1 : 0);
