// Recovery latency: Postfix (the Exchange stand-in) stops for a short outage,
// mail waits in the relay's spool with its own backoff; when Postfix answers
// again, what waits goes at once (paced by the concurrency window), not each
// message at the end of its own backoff. Times are read from Postfix's Maildir
// (when each message was delivered), not from the test's clock.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { maildirArrivalMs } from '../harness/arrivals.js';
import { startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { relayTestConfig, swaks } from '../harness/smtp-tools.js';
import { waitUntil } from '../harness/wait.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
let postfix: PostfixInstance;
let dir: string;
const relays: Relay[] = [];
const report: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-recovery-'));
  postfix = await startPostfix({ domains: ['corp.example.com', 'example.org'] });
}, 60_000);

afterAll(async () => {
  if (report.length) console.log(report.join('\n'));
  for (const r of relays) await r.stop().catch(() => undefined);
  await postfix?.destroy();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

async function relay(name: string, minBackoffMs: number): Promise<Relay> {
  const r = await startRelay(
    relayTestConfig({ spool: join(dir, name), primaryPort: postfix.port, instance: name, tuning: { minBackoffMs, maxBackoffMs: 10 * minBackoffMs } }),
    { log },
  );
  relays.push(r);
  return r;
}

async function send(r: Relay, ids: string[]): Promise<void> {
  const results = await Promise.all(ids.map((id) => swaks({ port: r.smtpPort, to: 'alice@corp.example.com', headers: [`Message-ID: <${id}@partner.example.net>`] })));
  expect(results.map((x) => x.code)).toEqual(ids.map(() => 0));
}

/** The latest retry time of the messages waiting for the primary (epoch ms). */
function latestRetry(r: Relay): number {
  let at = 0;
  for (const st of r.scheduler.states()) at = Math.max(at, st.deliveries.primary?.nextAttemptAt ?? 0);
  return at;
}

/** Delivery times at Postfix of these Message-IDs (epoch ms, from the Maildir names). */
async function arrivals(ids: string[]): Promise<number[]> {
  const msgs = await postfix.waitFor((m) => ids.every((id) => m.some((x) => x.messageId === `${id}@partner.example.net`)), 60_000, 'every message at Postfix');
  const mine = msgs.filter((m) => ids.some((id) => m.messageId === `${id}@partner.example.net`));
  expect(mine).toHaveLength(ids.length); // once each
  return Promise.all(mine.map((m) => maildirArrivalMs(m.file)));
}

describe('relay recovery after a short outage of the primary', () => {
  it('below the suspension: the first answer releases the deferred messages at once, not after their 10-20 s backoff', async () => {
    const r = await relay('short', 20_000);
    await postfix.stop();
    const waiting = ['short-1', 'short-2', 'short-3'];
    await send(r, waiting);
    await waitUntil('three deferred retries', 20_000, () => [...r.scheduler.states()].filter((s) => (s.deliveries.primary?.attempts ?? 0) >= 1).length === 3);
    expect(r.scheduler.isDown('primary')).toBe(false); // fewer failures than a suspension needs
    const ownRetry = latestRetry(r);
    await postfix.start();
    const answered = Date.now();
    expect(ownRetry - answered).toBeGreaterThan(8_000); // their own backoff is still far off
    await send(r, ['short-new']);
    const times = await arrivals([...waiting, 'short-new']);
    const first = Math.min(...times);
    const last = Math.max(...times);
    await waitUntil('spool empty', 10_000, () => r.scheduler.size === 0);
    expect(last - first).toBeLessThan(2_000);
    expect(last).toBeLessThan(ownRetry - 5_000);
    report.push(`recovery (3 deferred, not suspended): first to last delivery ${(last - first).toFixed(0)} ms; their own retries were due ${((ownRetry - first) / 1000).toFixed(1)} s after the first answer`);
  }, 60_000);

  it('restarted during the outage (the spool keeps each backoff): the first answer since start releases them', async () => {
    const spoolName = 'restart';
    const a = await relay(spoolName, 20_000);
    await postfix.stop();
    const waiting = Array.from({ length: 4 }, (_, i) => `restart-${i}`); // fewer than a suspension needs: each attempted
    await send(a, waiting);
    await waitUntil('four deferred retries', 20_000, () => [...a.scheduler.states()].filter((s) => (s.deliveries.primary?.attempts ?? 0) >= 1).length === 4);
    const ownRetry = latestRetry(a);
    await a.stop();
    await postfix.start();
    const b = await relay(spoolName, 20_000);
    await waitUntil('the spool loaded', 10_000, () => b.scheduler.size === 4);
    await send(b, ['restart-new']);
    const times = await arrivals([...waiting, 'restart-new']);
    const first = Math.min(...times);
    const last = Math.max(...times);
    await waitUntil('spool empty', 10_000, () => b.scheduler.size === 0);
    expect(last - first).toBeLessThan(2_000);
    expect(last).toBeLessThan(ownRetry - 5_000);
    report.push(`recovery (4 deferred, relay restarted): first to last delivery ${(last - first).toFixed(0)} ms; their own retries were due ${((ownRetry - first) / 1000).toFixed(1)} s after the first answer`);
  }, 60_000);

  it('suspended: when the probe delivery goes through, the whole queue empties within 2 s of it, paced by the window', async () => {
    const r = await relay('suspended', 6_000);
    await postfix.stop();
    const ids = Array.from({ length: 40 }, (_, i) => `susp-${i}`);
    await send(r, ids);
    await waitUntil('primary suspended', 20_000, () => r.scheduler.isDown('primary'));
    const attempted = () => [...r.scheduler.states()].reduce((n, s) => n + (s.deliveries.primary?.attempts ?? 0), 0);
    const before = attempted();
    await waitUntil('a probe delivery failed', 30_000, () => attempted() > before);
    await postfix.start();
    const ownRetry = latestRetry(r);
    const times = await arrivals(ids);
    const first = Math.min(...times); // the probe
    const last = Math.max(...times);
    await waitUntil('spool empty', 10_000, () => r.scheduler.size === 0);
    expect(last - first).toBeLessThan(2_000);
    report.push(`recovery (40 waiting, suspended): probe to last delivery ${(last - first).toFixed(0)} ms; the latest own retry was ${((ownRetry - first) / 1000).toFixed(1)} s after the probe`);
  }, 90_000);
});
