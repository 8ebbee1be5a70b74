// Bounded memory and no lock-out (issue 15, item 1), against a real relay and
// Postfix: the per-address limit decided when a connection opens (a burst
// refuses only its excess), an idle flood from an MX provider's address that
// gives way to its real mail, the total session time, and 500 sessions stalled
// in the middle of DATA with the relay process's peak memory read from /proc.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { processMemory, startRelayProcess, stopRelayProcess, type RelayProcess } from '../harness/relay-process.js';
import { RawSmtp, relayTestConfig, swaks } from '../harness/smtp-tools.js';
import { waitUntil } from '../harness/wait.js';
import { freePort } from '../harness/controlplane.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
let postfix: PostfixInstance;
let dir: string;
const relays: Relay[] = [];
const procs: RelayProcess[] = [];
const sockets: RawSmtp[] = [];
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-limits-'));
  postfix = await startPostfix({ domains: ['corp.example.com', 'example.org'] });
}, 60_000);

afterAll(async () => {
  for (const s of sockets) s.close();
  for (const r of relays) await r.stop().catch(() => undefined);
  for (const p of procs) await stopRelayProcess(p);
  await postfix?.destroy();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

function config(tuning: Parameters<typeof relayTestConfig>[0]['tuning'], listenPort?: number) {
  n++;
  return relayTestConfig({ spool: join(dir, `r${n}`), primaryPort: postfix.port, instance: `limits-${n}`, tuning, ...(listenPort ? { listenPort } : {}) });
}

async function relay(tuning: Parameters<typeof relayTestConfig>[0]['tuning']): Promise<Relay> {
  const r = await startRelay(config(tuning), { log });
  relays.push(r);
  return r;
}

/** A session that stops in the middle of DATA after `bodyBytes` bytes of its message. */
async function stalledInData(port: number, from: string, bodyBytes: number): Promise<RawSmtp> {
  const s = await RawSmtp.open(port, 30_000, from);
  sockets.push(s);
  expect(await s.reply(30_000)).toMatch(/^220 /);
  expect(await s.cmd('EHLO flood.partner.example.net', 30_000)).toMatch(/^250/);
  expect(await s.cmd('MAIL FROM:<flood@partner.example.net>', 30_000)).toMatch(/^250/);
  expect(await s.cmd('RCPT TO:<alice@corp.example.com>', 30_000)).toMatch(/^250/);
  expect(await s.cmd('DATA', 30_000)).toMatch(/^354/);
  const line = `${'x'.repeat(998)}\r\n`;
  s.write(`Subject: stalled\r\n\r\n${line.repeat(Math.ceil(bodyBytes / line.length))}`);
  return s;
}

async function inBatches<T>(count: number, batch: number, f: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < count; i += batch) out.push(...(await Promise.all(Array.from({ length: Math.min(batch, count - i) }, (_, j) => f(i + j)))));
  return out;
}

describe('relay limits', () => {
  for (const greetingDelay of [true, false]) {
    it(`a burst just over the per-address limit refuses only the excess (greetingDelay ${greetingDelay})`, async () => {
      const r = await relay({ maxClientsPerAddress: 20, greetingDelay });
      // 25 connections opened at once, before any greeting is due.
      const burst = await Promise.all(Array.from({ length: 25 }, () => RawSmtp.open(r.smtpPort, 10_000, '127.0.0.1')));
      sockets.push(...burst);
      const greetings = await Promise.all(burst.map((s) => s.reply()));
      expect(greetings.filter((g) => /^220 /.test(g))).toHaveLength(20);
      expect(greetings.filter((g) => /^421 4\.7\.0 /.test(g))).toHaveLength(5);
      for (const s of burst) s.close();
    }, 60_000);
  }

  it('an idle flood from one address gives way to its real mail: a fresh session gets 250 at once, the idlest stalled session 421 4.4.2', async () => {
    const r = await relay({ maxClientsPerAddress: 20, stressIdleMs: 1_000 });
    const flood = await inBatches(20, 20, () => stalledInData(r.smtpPort, '127.0.0.1', 4_000));
    await new Promise((res) => setTimeout(res, 1_100)); // the flood has been idle stressIdleMs: the wait under test
    const t0 = Date.now();
    const ok = await swaks({ port: r.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <gave-way@partner.example.net>'], extra: ['--local-interface', '127.0.0.1'] });
    expect(ok.code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5_000);
    await postfix.waitFor((m) => m.some((x) => x.messageId === 'gave-way@partner.example.net'), 30_000, 'gave-way');
    await waitUntil('the idlest stalled session was closed', 10_000, () => flood.some((s) => s.closed));
  }, 60_000);

  it('the total session time ends even an active session (421 4.4.2)', async () => {
    const r = await relay({ maxSessionMs: 1_500 });
    const s = await RawSmtp.open(r.smtpPort);
    sockets.push(s);
    expect(await s.reply()).toMatch(/^220 /);
    const t0 = Date.now();
    let last = '';
    // A NOOP every 200 ms: the client is never idle. The 421 may come between two NOOPs: it is the next reply read.
    while (Date.now() - t0 < 10_000) {
      last = await s.cmd('NOOP');
      if (!/^250/.test(last)) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    expect(last).toMatch(/^421 4\.4\.2 Session time limit/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1_000);
  }, 30_000);

  it('500 sessions stalled mid-DATA plus normal traffic: the relay process stays far under a 256 MiB pod and fresh sessions from a flooded address get 250 within seconds', async () => {
    const port = await freePort();
    const cfg = config({ maxClients: 600, maxClientsPerAddress: 100, stressIdleMs: 3_000 }, port);
    const p = await startRelayProcess(cfg, dir);
    procs.push(p);
    const before = await processMemory(p.proc.pid!);
    // 500 stalled sessions from five addresses (100 each), each 200 KB into its message.
    const t0 = Date.now();
    let firstStalledAt = Infinity;
    await inBatches(500, 50, async (i) => {
      const s = await stalledInData(port, `127.0.0.${1 + (i % 5)}`, 200_000);
      firstStalledAt = Math.min(firstStalledAt, Date.now());
      return s;
    });
    const floodMs = Date.now() - t0;
    // Normal traffic from another address, and from a flooded one (its idlest session gives way).
    for (const [from, id] of [['127.0.0.9', 'normal'], ['127.0.0.1', 'flooded-address']] as const) {
      if (from === '127.0.0.1') {
        // A full group gives up its idlest session only once that one has been idle stressIdleMs
        // (clients.ts); a flood opened faster than that has none yet: wait until the first
        // stalled sessions are that old (and a second for their last bytes to arrive).
        const due = firstStalledAt + 3_000 + 1_000 - Date.now();
        if (due > 0) await new Promise((resolve) => setTimeout(resolve, due));
      }
      const s0 = Date.now();
      const ok = await swaks({ port, to: 'alice@corp.example.com', headers: [`Message-ID: <${id}@partner.example.net>`], extra: ['--local-interface', from], timeoutMs: 30_000 });
      expect(ok.code).toBe(0);
      expect(Date.now() - s0).toBeLessThan(15_000);
      await postfix.waitFor((m) => m.some((x) => x.messageId === `${id}@partner.example.net`), 30_000, id);
    }
    const after = await processMemory(p.proc.pid!);
    process.stderr.write(`relay process: RSS ${(before.rss / 2 ** 20).toFixed(0)} MiB at start, peak ${(after.peak / 2 ** 20).toFixed(0)} MiB with 500 sessions stalled mid-DATA (flood opened in ${floodMs} ms)\n`);
    expect(after.peak).toBeLessThan(256 * 2 ** 20);
    // 500 x 200 KB went through: under 200 KiB per stalled session stayed (each buffering its
    // message, and holding its last socket read, would be more).
    expect(after.peak - before.rss).toBeLessThan(100 * 2 ** 20);
  }, 180_000);
});
