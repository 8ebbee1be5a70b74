// The heart of the product, end to end: a real apiserver, the operator process,
// two relay processes from the config the operator rendered, Postfix as
// Exchange, the Gmail emulator, and a steady stream of mail from smtp-source.
// Exchange goes down: FailoverActive within failureThreshold x period + 5 s,
// every relay told, outage mail reaches Gmail (FailoverOnly), excluded mail
// does not. Exchange comes back: failover ends, the relays replay at the
// configured rate, and every accepted message is at Exchange exactly once.
// Then manual Active / Inactive.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFile } from 'node:fs/promises';
import { maildirArrivalMs, steadyRate } from '../harness/arrivals.js';
import { smtpSource, swaks } from '../harness/smtp-tools.js';
import { FAST_RELAY_TUNING, loopbackSpec, startStack, type Stack } from '../harness/stack.js';
import { waitFor } from '../harness/wait.js';

const USER = 'alice@corp.example.com';
const RATE = 10;
const PERIOD_S = 1;
const FAILURES = 2;
let stack: Stack;
const report: string[] = [];

beforeAll(async () => {
  stack = await startStack({
    name: 'corp',
    namespace: 'mail',
    relays: 2,
    domains: ['corp.example.com'],
    gmailUsers: [USER],
    spec: loopbackSpec({
      domain: 'corp.example.com',
      periodSeconds: PERIOD_S,
      failureThreshold: FAILURES,
      successThreshold: 2,
      messageDeadline: '15m',
      maxMessagesPerSecond: RATE,
      policy: { exclude: [{ name: 'confidential', header: { name: 'Sensitivity', value: 'Company-Confidential' } }] },
    }),
    tuning: FAST_RELAY_TUNING,
    progress: (l) => process.env.MC_TEST_LOG && console.log(l),
  });
}, 240_000);

afterAll(async () => {
  if (report.length) console.log(report.join('\n'));
  await stack?.stop();
}, 60_000);

/** smtp-source batches to alternating relays until stopped. */
function stream() {
  let running = true;
  let batches = 0;
  const done = (async () => {
    while (running) {
      const relay = stack.relays[batches % stack.relays.length]!;
      batches++;
      await smtpSource({
        port: relay.smtpPort,
        messages: 3,
        sessions: 1,
        to: USER,
        reuseConnections: true,
        timeoutMs: 30_000,
      });
      await new Promise((r) => setTimeout(r, 400));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
    },
  };
}

const gmailIds = () => stack.gmail.messages(USER).map((m) => m.rfc822MessageId ?? '');
const isTrue = (type: string) => stack.condition(type)?.status === 'True';

describe('an Exchange outage and its recovery', () => {
  it('fails over within the threshold, sends outage mail to Gmail only, replays at the configured rate, and loses or duplicates nothing', async () => {
    await waitFor('PrimaryHealthy=True', () => isTrue('PrimaryHealthy'), 60_000);
    expect(stack.condition('FailoverActive')).toMatchObject({ status: 'False', reason: 'PrimaryHealthy' });
    expect(stack.get().status?.primary).toMatchObject({ consecutiveFailures: 0 });

    const load = stream();
    await waitFor('mail at Exchange', async () => (await stack.postfix.messages()).length >= 10, 60_000);
    expect(gmailIds()).toEqual([]); // FailoverOnly: nothing for Google while Exchange is fine

    // Exchange goes down.
    const t0 = Date.now();
    await stack.postfix.stop();
    const beforeOutage = new Set((await stack.postfix.countByMessageId()).keys());
    await waitFor('FailoverActive=True', () => isTrue('FailoverActive'), 30_000, 50);
    const detectedMs = Date.now() - t0;
    await waitFor(
      'every relay active',
      async () => (await Promise.all(stack.relays.map((_, i) => stack.relayState(i)))).every((s) => s.active),
      10_000,
      50,
    );
    const propagatedMs = Date.now() - t0;
    expect(detectedMs).toBeLessThan(FAILURES * PERIOD_S * 1000 + 5000);
    expect(propagatedMs - detectedMs).toBeLessThan(5000);
    expect(stack.condition('FailoverActive')).toMatchObject({ reason: 'PrimaryUnhealthy' });
    expect(stack.condition('PrimaryHealthy')).toMatchObject({ status: 'False', reason: 'ConnectionRefused' });
    await waitFor(
      'FailoverStarted event',
      () => stack.events().some((e) => e.reason === 'FailoverStarted' && e.type === 'Warning'),
      10_000,
    );
    expect(stack.get().status?.lastFailover).toMatchObject({ trigger: 'Automatic' });

    // Mail keeps coming during the outage; one confidential message must stay out of Google.
    const conf = await swaks({
      port: stack.relays[1]!.smtpPort,
      to: USER,
      headers: ['Message-ID: <confidential-1@partner.example.net>', 'Sensitivity: Company-Confidential'],
    });
    expect(conf.code).toBe(0);
    // Long enough for some 30 messages per relay: the replay's rate is measured while both replay.
    await new Promise((r) => setTimeout(r, 12_000));
    await load.stop();
    const accepted = stack.accepted();
    const outage = accepted.filter((id) => !beforeOutage.has(id) && id !== 'confidential-1@partner.example.net');
    expect(outage.length).toBeGreaterThan(20);
    await waitFor('outage mail in Gmail', () => outage.every((id) => gmailIds().includes(id)), 60_000);
    await waitFor(
      'status counts the Gmail copies',
      () => (stack.get().status?.lastFailover?.messagesToBackup ?? 0) >= outage.length,
      30_000,
    );

    // What each relay holds for Exchange (nothing can be delivered yet).
    const perRelay = (await Promise.all(stack.relays.map((_, i) => stack.relayState(i)))).map((s) => s.queuedPrimary);

    // Exchange comes back.
    const t1 = Date.now();
    await stack.postfix.start();
    await waitFor('FailoverActive=False', () => stack.condition('FailoverActive')?.status === 'False', 30_000, 50);
    const recoveredMs = Date.now() - t1;
    const replayStart = Date.now();
    const queued = (await Promise.all(stack.relays.map((_, i) => stack.relayState(i)))).reduce(
      (n, s) => n + s.queuedPrimary,
      0,
    );
    await stack.postfix.waitFor(
      (msgs) => accepted.every((id) => msgs.some((m) => m.messageId === id)),
      120_000,
      'every accepted message at Exchange',
    );
    const replaySeconds = (Date.now() - replayStart) / 1000;
    const rate = queued / replaySeconds;
    await waitFor('ReplayCompleted event', () => stack.events().some((e) => e.reason === 'ReplayCompleted'), 30_000);
    const lf = stack.get().status?.lastFailover;
    expect(lf).toMatchObject({ replayRemaining: 0 });
    // RFC 3339 times (whole seconds): the start after Exchange stopped, the end after it came back.
    expect(lf?.end).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    const endMs = Date.parse(lf!.end!);
    expect(endMs).toBeGreaterThanOrEqual(Math.floor(t1 / 1000) * 1000);
    expect(endMs).toBeLessThanOrEqual(Date.now());
    expect(Date.parse(lf!.start!)).toBeGreaterThanOrEqual(Math.floor(t0 / 1000) * 1000);
    expect(endMs).toBeGreaterThan(Date.parse(lf!.start!));
    expect(lf?.messagesReplayed).toBeGreaterThanOrEqual(queued);
    expect(stack.events().map((e) => e.reason)).toEqual(
      expect.arrayContaining(['FailoverStarted', 'FailoverEnded', 'ReplayCompleted']),
    );

    // Zero lost, zero duplicated: at Exchange every accepted message exactly once.
    const counts = await stack.postfix.countByMessageId();
    const lost = accepted.filter((id) => !counts.has(id));
    const duplicated = accepted.filter((id) => (counts.get(id) ?? 0) > 1);
    expect({ lost, duplicated }).toEqual({ lost: [], duplicated: [] });
    // At Gmail: the outage mail once each, nothing from before the outage, not the confidential message.
    const g = gmailIds();
    expect(g.length).toBe(new Set(g).size);
    expect(g.filter((id) => beforeOutage.has(id))).toEqual([]);
    expect(g).not.toContain('confidential-1@partner.example.net');
    const audit = (await Promise.all(stack.relays.map((r) => readFile(r.auditFile, 'utf8').catch(() => '')))).join('');
    expect(audit).toMatch(
      /"confidential-1@partner\.example\.net".*"excluded"|"excluded".*"confidential-1@partner\.example\.net"/,
    );

    // The replay at the configured rate, within 10 %, from Postfix's delivery times (Maildir names):
    // each relay paces its share (RATE / relays) after a burst of at most two buckets (the one of the
    // failover, when the primary answers its probe first, and the replay's own at its start); the
    // slope runs over the deliveries after those bursts while both relays still replay (the smaller
    // queue not yet empty). A bucket at half the rate fails here.
    const replayed = (await stack.postfix.messages()).filter((m) => m.messageId && !beforeOutage.has(m.messageId));
    const times = (await Promise.all(replayed.map((m) => maildirArrivalMs(m.file)))).sort((a, b) => a - b);
    const share = Math.ceil(RATE / stack.relays.length);
    const burst = 2 * share * stack.relays.length;
    const bothReplaying = times.slice(0, stack.relays.length * Math.min(...perRelay) - 2);
    expect(bothReplaying.length - burst).toBeGreaterThanOrEqual(10);
    const paced = steadyRate(bothReplaying, burst)!;
    expect(Math.abs(paced - share * stack.relays.length) / (share * stack.relays.length)).toBeLessThanOrEqual(0.1);
    report.push(
      `failover scenario: accepted ${accepted.length}, before outage ${beforeOutage.size}, to Gmail ${g.length}, lost ${lost.length}, duplicated ${duplicated.length}`,
      `  detection ${detectedMs} ms (threshold ${FAILURES} x ${PERIOD_S}s), all relays active after ${propagatedMs} ms, recovery seen after ${recoveredMs} ms`,
      `  replay: ${queued} messages in ${replaySeconds.toFixed(1)} s = ${rate.toFixed(1)}/s end to end; ${paced.toFixed(2)}/s paced at Postfix while both relays replayed (per relay ${perRelay.join(', ')}; configured ${RATE}/s)`,
    );
  }, 300_000);

  it('manual Active fails over a healthy Exchange; Inactive forbids automatic failover; Auto follows the probes again', async () => {
    const setManual = (m: string) =>
      stack.cp.kubectl([
        '-n',
        'mail',
        'patch',
        'mailcontinuity',
        'corp',
        '--type=merge',
        '-p',
        JSON.stringify({ spec: { failover: { manual: m } } }),
      ]);
    await waitFor(
      'healthy and not failed over',
      () => isTrue('PrimaryHealthy') && stack.condition('FailoverActive')?.status === 'False',
      60_000,
    );

    setManual('Active');
    await waitFor('manual failover', () => stack.condition('FailoverActive')?.reason === 'ManualFailover', 15_000, 50);
    await waitFor(
      'relays active',
      async () => (await stack.relayState(0)).active && (await stack.relayState(1)).active,
      5000,
      50,
    );
    expect(stack.get().status?.lastFailover).toMatchObject({ trigger: 'Manual' });

    setManual('Inactive');
    await waitFor('failover off', () => stack.condition('FailoverActive')?.reason === 'ManualInactive', 15_000, 50);
    await stack.postfix.stop();
    await waitFor('PrimaryHealthy=False', () => stack.condition('PrimaryHealthy')?.status === 'False', 20_000);
    const c = stack.condition('FailoverActive');
    expect(c).toMatchObject({ status: 'False', reason: 'ManualInactive' });
    expect(c?.message).toContain('primary is unhealthy');
    expect((await stack.relayState(0)).active).toBe(false);

    setManual('Auto');
    await waitFor(
      'automatic failover',
      () => stack.condition('FailoverActive')?.reason === 'PrimaryUnhealthy',
      15_000,
      50,
    );
    await stack.postfix.start();
    await waitFor('failover ends', () => stack.condition('FailoverActive')?.status === 'False', 30_000, 50);
  }, 180_000);
});
