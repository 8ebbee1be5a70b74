// Edge cases of continuity events on the whole product (real apiserver, the
// operator process, a relay process from the rendered config, Postfix as
// Exchange behind a TCP proxy the test can close and open instantly, the
// Gmail emulator):
//   (a) a flapping Exchange, down for fewer probes than failureThreshold, again
//       and again: no failover, no FailoverStarted event, the relay never told
//       to fail over; the same outage made longer does fail over (so the
//       proxy's outages are real ones for the probes);
//   (b) the operator stopped during an outage: the relay's own
//       spec.failover.messageDeadline (1m) still sends FailoverOnly mail to
//       Gmail, not before the deadline; once the operator and Exchange are
//       back the message reaches Exchange exactly once, and Gmail has it once.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { KubeClient } from '../../src/operator/kube/client.js';
import { MAILCONTINUITIES } from '../../src/operator/kube/resources.js';
import { swaks } from '../harness/smtp-tools.js';
import {
  FAST_RELAY_TUNING,
  loopbackSpec,
  startStack,
  type MailContinuityObject,
  type Stack,
} from '../harness/stack.js';
import { waitFor } from '../harness/wait.js';

const USER = 'alice@corp.example.com';
const PERIOD_S = 1;
const FAILURES = 3;
const DEADLINE_MS = 60_000;
let stack: Stack;
let kube: KubeClient;
const report: string[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  stack = await startStack({
    name: 'edge',
    namespace: 'mail',
    relays: 1,
    primaryProxy: true,
    domains: ['corp.example.com'],
    gmailUsers: [USER],
    spec: loopbackSpec({
      domain: 'corp.example.com',
      periodSeconds: PERIOD_S,
      failureThreshold: FAILURES,
      successThreshold: 2,
      messageDeadline: '1m',
      maxMessagesPerSecond: 20,
    }),
    tuning: FAST_RELAY_TUNING,
    progress: (l) => process.env.MC_TEST_LOG && console.log(l),
  });
  kube = KubeClient.fromFile(stack.cp.kubeconfig);
}, 240_000);

afterAll(async () => {
  if (report.length) console.log(report.join('\n'));
  await stack?.stop();
}, 60_000);

/** The resource through the API without blocking the event loop (the proxy lives in this process). */
async function conditionOf(type: string) {
  const mc = (await kube.get(MAILCONTINUITIES, 'mail', 'edge')) as MailContinuityObject;
  return mc.status?.conditions?.find((c) => c.type === type);
}
const failoverStarted = () =>
  stack
    .events()
    .filter((e) => e.reason === 'FailoverStarted')
    .reduce((n, e) => n + (e.count ?? 1), 0);
const gmailCopies = (id: string) => stack.gmail.messages(USER).filter((m) => m.rfc822MessageId === id).length;

async function quiet(): Promise<void> {
  await waitFor(
    'healthy, no failover, relay idle',
    async () =>
      (await conditionOf('PrimaryHealthy'))?.status === 'True' &&
      (await conditionOf('FailoverActive'))?.status === 'False' &&
      !(await stack.relayState(0)).active &&
      !(await stack.relayState(0)).replaying,
    60_000,
    200,
  );
}

/** Polls FailoverActive in the API and the relay's own state every 100 ms until stopped. */
function watchFailover() {
  const seen = { apiTrue: 0, relayActive: 0, samples: 0, errors: 0 };
  let running = true;
  const done = (async () => {
    while (running) {
      try {
        const [c, r] = await Promise.all([conditionOf('FailoverActive'), stack.relayState(0)]);
        seen.samples++;
        if (c?.status !== 'False') seen.apiTrue++;
        if (r.active) seen.relayActive++;
      } catch {
        seen.errors++;
      }
      await sleep(100);
    }
  })();
  return {
    seen,
    stop: async () => {
      running = false;
      await done;
      return seen;
    },
  };
}

describe('continuity events at the edges', () => {
  it('a flapping Exchange (down for fewer probes than failureThreshold, three times) causes no failover; a longer outage does', async () => {
    await quiet();
    const proxy = stack.proxy!;
    const failoverBefore = await conditionOf('FailoverActive');
    const healthyBefore = await conditionOf('PrimaryHealthy');
    expect(failoverBefore).toMatchObject({ status: 'False', reason: 'PrimaryHealthy' });
    const startedBefore = failoverStarted();

    // Down 1.5 s, up 4 s, three times. Probes start every 0.95-1.05 s, so a
    // 1.5-s outage sees one or two failed probes: fewer than failureThreshold (3).
    // Nothing else talks to Exchange meanwhile (no mail), so the connections
    // the proxy resets are the operator's probes.
    const watch = watchFailover();
    const failedProbes: number[] = [];
    for (let i = 0; i < 3; i++) {
      const before = proxy.resets;
      await proxy.close('reset');
      await sleep(1500);
      await proxy.open();
      failedProbes.push(proxy.resets - before);
      await sleep(4000);
    }
    await sleep(2000); // a late verdict would show by now
    const seen = await watch.stop();

    // The probes did see every outage, never failureThreshold times in a row...
    for (const n of failedProbes) {
      expect(n).toBeGreaterThanOrEqual(1);
      expect(n).toBeLessThan(FAILURES);
    }
    // ...so nothing happened: no failover in the API or at the relay, no event, no transition.
    expect(seen.samples).toBeGreaterThan(50);
    expect(seen).toMatchObject({ apiTrue: 0, relayActive: 0 });
    expect(failoverStarted()).toBe(startedBefore);
    expect(await conditionOf('FailoverActive')).toMatchObject({
      status: 'False',
      reason: 'PrimaryHealthy',
      lastTransitionTime: failoverBefore!.lastTransitionTime,
    });
    expect(await conditionOf('PrimaryHealthy')).toMatchObject({
      status: 'True',
      lastTransitionTime: healthyBefore!.lastTransitionTime,
    });

    // The same kind of outage, long enough, is a failover: the flaps above were real outages to the probes.
    const t0 = Date.now();
    await proxy.close('refuse');
    await waitFor(
      'FailoverActive=True',
      async () => (await conditionOf('FailoverActive'))?.status === 'True',
      30_000,
      50,
    );
    const detectedMs = Date.now() - t0;
    expect(detectedMs).toBeLessThan(FAILURES * PERIOD_S * 1000 + 5000);
    await waitFor('the relay told', async () => (await stack.relayState(0)).active, 10_000, 50);
    await waitFor('FailoverStarted event', () => failoverStarted() > startedBefore, 10_000);
    await proxy.open();
    await waitFor('failover ends', async () => (await conditionOf('FailoverActive'))?.status === 'False', 30_000, 50);
    report.push(
      `flapping: failed probes per 1.5-s outage ${failedProbes.join(', ')} (threshold ${FAILURES}), ${seen.samples} samples, failover never seen; a long outage was detected after ${detectedMs} ms`,
    );
  }, 120_000);

  it('with the operator stopped, the relay sends outage mail to Gmail by its own messageDeadline (1m), not before; Exchange gets it exactly once when back', async () => {
    await quiet();
    const id = `deadline-${Date.now()}@partner.example.net`;

    await stack.stopOperator();
    await stack.postfix.stop();
    await stack.proxy!.close('refuse');

    const t0 = Date.now();
    const sent = await swaks({ port: stack.relays[0]!.smtpPort, to: USER, headers: [`Message-ID: <${id}>`] });
    expect(sent.code).toBe(0);
    const t250 = Date.now();

    // Nobody tells the relay that Exchange is down: it is not in failover, and waits for the deadline.
    await sleep(5000);
    expect(await stack.relayState(0)).toMatchObject({ active: false, queuedPrimary: 1 });
    expect(gmailCopies(id)).toBe(0);
    const atGmail = await waitFor(
      'the message in Gmail',
      () => (gmailCopies(id) > 0 ? Date.now() : undefined),
      DEADLINE_MS + 30_000,
      250,
    );
    const afterMs = atGmail - t0;
    expect(afterMs).toBeGreaterThanOrEqual(DEADLINE_MS); // the relay received it after t0: never early
    expect(atGmail - t250).toBeLessThan(DEADLINE_MS + 15_000);
    expect(await stack.relayState(0)).toMatchObject({ active: false, queuedPrimary: 1 });
    expect((await stack.postfix.countByMessageId()).get(id)).toBeUndefined();

    // The operator comes back during the outage: it fails over (its probes see Exchange down); the
    // relay does not send a second copy of mail that already went to Gmail.
    const startedBefore = failoverStarted();
    await stack.startOperator();
    await waitFor(
      'FailoverActive=True',
      async () => (await conditionOf('FailoverActive'))?.status === 'True',
      30_000,
      100,
    );
    await waitFor('the relay told', async () => (await stack.relayState(0)).active, 15_000, 100);
    await waitFor('FailoverStarted event', () => failoverStarted() > startedBefore, 10_000);
    await sleep(2000);
    expect(gmailCopies(id)).toBe(1);

    // Exchange comes back: failover ends, the replay delivers the message there, once.
    await stack.postfix.start();
    await stack.proxy!.open();
    await waitFor('failover ends', async () => (await conditionOf('FailoverActive'))?.status === 'False', 30_000, 100);
    await stack.postfix.waitFor((msgs) => msgs.some((m) => m.messageId === id), 60_000, 'the message at Exchange');
    await waitFor(
      'replay done',
      async () => {
        const s = await stack.relayState(0);
        return !s.replaying && s.queuedPrimary === 0;
      },
      30_000,
      200,
    );
    await sleep(2000);
    expect((await stack.postfix.countByMessageId()).get(id)).toBe(1);
    expect(gmailCopies(id)).toBe(1);
    report.push(
      `operator down: message in Gmail ${(afterMs / 1000).toFixed(1)} s after it was sent (messageDeadline 1m), at Exchange once after recovery`,
    );
  }, 240_000);
});
