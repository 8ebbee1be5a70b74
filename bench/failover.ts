// Failover benchmark (not a test): the whole product on one machine
// (test/harness/stack.ts: etcd + kube-apiserver, the operator process, two
// relay processes from the rendered ConfigMap, Postfix as Exchange), health
// probes every 1 s, failureThreshold 2, successThreshold 2.
//
// 1. N outages (postfix stop / start), each measured from the stop call:
//    detection   -> FailoverActive=True in the API,
//    propagation -> every relay's GET /admin/failover says active,
//    recovery    -> (from the start call) FailoverActive=False in the API.
// 2. Replay: with Exchange stopped and failover active, M messages queued
//    (smtp-source to both relays, half each, a few sessions reusing
//    connections, -N: one distinct recipient per message); Exchange starts;
//    time from the port answering until Postfix holds all M, against the
//    configured recovery.maxMessagesPerSecond, progress sampled from
//    status.lastFailover and the relays; every message at Postfix exactly once.
//    The backup is method SmtpRelay into a local smtp-sink: the Gmail emulator
//    enforces Gmail's per-user quota (10 imports/s), which would make the
//    queueing, not the replay, the long part.
//
//   node --import tsx bench/failover.ts [--outages 10] [--messages 10000] [--rate 200]
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { KubeClient, type KubeObject } from '../src/operator/kube/client.js';
import { EVENTS, MAILCONTINUITIES } from '../src/operator/kube/resources.js';
import { smtpSource, startSmtpSink, type SmtpSink } from '../test/harness/smtp-tools.js';
import {
  FAST_RELAY_TUNING,
  loopbackSpec,
  startStack,
  type MailContinuityObject,
  type Stack,
} from '../test/harness/stack.js';

const { values } = parseArgs({
  options: {
    outages: { type: 'string', default: '10' },
    messages: { type: 'string', default: '10000' },
    rate: { type: 'string', default: '200' },
  },
});
const OUTAGES = Number(values.outages);
const MESSAGES = Number(values.messages);
const RATE = Number(values.rate);
const PERIOD_S = 1;
const FAILURES = 2;
const SUCCESSES = 2;
const DOMAIN = 'corp.example.com';
const NS = 'mail';
const NAME = 'corp';

const t00 = Date.now();
const log = (s: string) => console.log(`[bench ${((Date.now() - t00) / 1000).toFixed(0).padStart(4)}s] ${s}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const stats = (xs: number[]) =>
  xs.length === 0 ? 'n/a' : `${Math.min(...xs)} / ${Math.round(median(xs))} / ${Math.max(...xs)}`;

type Status = NonNullable<MailContinuityObject['status']>;

async function until<T>(what: string, f: () => Promise<T | undefined | false>, timeoutMs: number, everyMs = 50) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Maildir files at Postfix (a readdir per mailbox: cheap enough to poll with 10,000 files). */
async function postfixCount(stack: Stack): Promise<number> {
  const mail = join(stack.postfix.dir, 'mail');
  let n = 0;
  for (const d of await readdir(mail).catch(() => [] as string[]))
    for (const u of await readdir(join(mail, d)).catch(() => [] as string[]))
      n += (await readdir(join(mail, d, u, 'new')).catch(() => [] as string[])).length;
  return n;
}

async function main() {
  let stack: Stack | undefined;
  let sink: SmtpSink | undefined;
  const stopAll = async () => {
    await stack?.stop();
    await sink?.stop();
  };
  process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));
  try {
    sink = await startSmtpSink({ backlog: 256 });
    log('starting the stack (control plane, operator, Postfix, 2 relays)');
    stack = await startStack({
      name: NAME,
      namespace: NS,
      relays: 2,
      domains: [DOMAIN],
      gmailUsers: [`alice@${DOMAIN}`],
      spec: loopbackSpec({
        domain: DOMAIN,
        periodSeconds: PERIOD_S,
        failureThreshold: FAILURES,
        successThreshold: SUCCESSES,
        messageDeadline: '15m',
        maxMessagesPerSecond: RATE,
        backup: { gmail: { method: 'SmtpRelay', smtpRelay: { host: '127.0.0.1', port: sink.port } } },
      }),
      tuning: { ...FAST_RELAY_TUNING, greetingDelay: false },
      progress: (l) => log(l),
    });
    const s = stack;
    const kube = KubeClient.fromFile(s.cp.kubeconfig);
    const status = async () => ((await kube.get(MAILCONTINUITIES, NS, NAME)) as MailContinuityObject).status ?? {};
    const cond = (st: Status, type: string) => st.conditions?.find((c) => c.type === type)?.status;
    const relays = () => Promise.all(s.relays.map((_, i) => s.relayState(i)));
    const events = async () =>
      (
        await kube.list<KubeObject & { reason: string; count?: number; involvedObject: { name: string } }>(EVENTS, NS)
      ).items.filter((e) => e.involvedObject.name === NAME);

    await until(
      'PrimaryHealthy=True, FailoverActive=False',
      async () => {
        const st = await status();
        return cond(st, 'PrimaryHealthy') === 'True' && cond(st, 'FailoverActive') === 'False';
      },
      60_000,
      200,
    );

    // ------------------------------------------------------------ 1. outages
    interface Outage {
      stopMs: number;
      detectMs: number;
      relaysMs: number;
      startMs: number;
      recoverMs: number;
    }
    const outages: Outage[] = [];
    for (let i = 1; i <= OUTAGES; i++) {
      // Quiet, healthy and every relay inactive; then a random phase against the probe period.
      await until(
        'healthy and inactive everywhere',
        async () => {
          const st = await status();
          return (
            cond(st, 'PrimaryHealthy') === 'True' &&
            cond(st, 'FailoverActive') === 'False' &&
            (await relays()).every((r) => !r.active && !r.replaying)
          );
        },
        60_000,
        100,
      );
      await sleep(1000 + Math.random() * 1000);

      const t0 = Date.now();
      await s.postfix.stop();
      const stopMs = Date.now() - t0;
      let detectMs = 0;
      let relaysMs = 0;
      await until(
        'failover detected and propagated',
        async () => {
          const [st, rs] = await Promise.all([status(), relays()]);
          const now = Date.now() - t0;
          if (!detectMs && cond(st, 'FailoverActive') === 'True') detectMs = now;
          if (!relaysMs && rs.every((r) => r.active)) relaysMs = now;
          return detectMs > 0 && relaysMs > 0;
        },
        60_000,
        50,
      );
      await sleep(1000);

      const t1 = Date.now();
      await s.postfix.start();
      const startMs = Date.now() - t1;
      const recoverMs = await until(
        'FailoverActive=False',
        async () => (cond(await status(), 'FailoverActive') === 'False' ? Date.now() - t1 : undefined),
        60_000,
        50,
      );
      outages.push({ stopMs, detectMs, relaysMs, startMs, recoverMs });
      log(
        `outage ${i}: postfix stop ${stopMs} ms, FailoverActive=True after ${detectMs} ms, all relays active after ${relaysMs} ms; postfix start ${startMs} ms, FailoverActive=False after ${recoverMs} ms`,
      );
    }

    // ------------------------------------------------------------ 2. replay
    log(`replay: Exchange down, failover on, ${MESSAGES} messages to the relays`);
    await until(
      'healthy and inactive everywhere',
      async () => {
        const st = await status();
        return cond(st, 'FailoverActive') === 'False' && (await relays()).every((r) => !r.active && !r.replaying);
      },
      60_000,
      100,
    );
    await s.postfix.stop();
    await until('failover active on every relay', async () => (await relays()).every((r) => r.active), 30_000);
    const tq = Date.now();
    const perRelay = Math.floor(MESSAGES / s.relays.length);
    const users = ['alice', 'bob', 'carol', 'dave'];
    const sources = await Promise.all(
      s.relays.map((r, i) =>
        smtpSource({
          port: r.smtpPort,
          messages: perRelay,
          sessions: 4,
          to: `${users[i]}@${DOMAIN}`,
          numberRecipients: true,
          reuseConnections: true,
          length: 1024,
          timeoutMs: 300_000,
        }),
      ),
    );
    const queuedMs = Date.now() - tq;
    for (const [i, r] of sources.entries()) {
      if (r.code !== 0 || r.timedOut) throw new Error(`smtp-source to relay ${i}: ${r.code} ${r.stderr.slice(0, 500)}`);
    }
    const total = perRelay * s.relays.length;
    log(
      `queued ${total} in ${(queuedMs / 1000).toFixed(1)} s (${((total * 1000) / queuedMs).toFixed(0)} msg/s intake)`,
    );
    await sink.waitForCount(total, 300_000);
    const backupMs = Date.now() - tq;
    const waiting = await until(
      'every message waiting for the primary',
      async () => {
        const rs = await relays();
        const n = rs.reduce((a, r) => a + r.queuedPrimary, 0);
        return n === total && rs.every((r) => r.queuedBackup === 0) ? n : undefined;
      },
      60_000,
      500,
    );
    log(
      `backup (smtp-sink) has ${await sink.count()} copies after ${(backupMs / 1000).toFixed(1)} s; ${waiting} wait for the primary`,
    );
    const st0 = await status();
    const messagesToBackup = st0.lastFailover?.messagesToBackup;

    const t1 = Date.now();
    await s.postfix.start();
    const replayStartMs = Date.now() - t1;
    const tOff = await until(
      'FailoverActive=False',
      async () => (cond(await status(), 'FailoverActive') === 'False' ? Date.now() : undefined),
      60_000,
      50,
    );
    log(`Exchange started; FailoverActive=False after ${tOff - t1} ms; sampling the replay every 3 s`);
    const samples: {
      t: number;
      postfix: number;
      relayReplayed: number;
      statusReplayed?: number;
      remaining?: number;
    }[] = [];
    let tFirst = 0;
    let tDone = 0;
    let nextSample = 0;
    for (;;) {
      // Postfix's count every 250 ms (the end, to a quarter second), the rest every 3 s.
      const n = await postfixCount(s);
      if (!tFirst && n > 0) tFirst = Date.now();
      if (n >= total) {
        tDone = Date.now();
        break;
      }
      if (Date.now() - tOff > 300_000) throw new Error(`replay not done after 300 s: ${n} of ${total}`);
      if (Date.now() < nextSample) {
        await sleep(250);
        continue;
      }
      nextSample = Date.now() + 3000;
      const [rs, st] = await Promise.all([relays(), status()]);
      const relayReplayed = rs.reduce((a, r) => a + r.messagesReplayed, 0);
      const sample = {
        t: Date.now() - tOff,
        postfix: n,
        relayReplayed,
        statusReplayed: st.lastFailover?.messagesReplayed,
        remaining: st.lastFailover?.replayRemaining,
      };
      samples.push(sample);
      log(
        `  +${(sample.t / 1000).toFixed(1)} s: Postfix has ${n}, relays replayed ${relayReplayed}, status.lastFailover messagesReplayed ${sample.statusReplayed ?? '-'} replayRemaining ${sample.remaining ?? '-'}`,
      );
    }
    // The relays pace the primary from the moment it answers (before the operator ends the
    // failover), so the rate is taken from the port answering, not from FailoverActive=False.
    const tUp = t1 + replayStartMs;
    const replaySeconds = (tDone - tUp) / 1000;
    await until(
      'status.lastFailover to show the replay done',
      async () => {
        const lf = (await status()).lastFailover;
        return lf?.replayRemaining === 0;
      },
      60_000,
      500,
    ).catch((e: unknown) => log(`!! ${(e as Error).message}`));
    const replayCompletedEvents = (await events())
      .filter((e) => e.reason === 'ReplayCompleted')
      .reduce((n, e) => n + (e.count ?? 1), 0);
    const stEnd = await status();
    const beforeOff = samples[0]?.postfix ?? 0;

    // Exactly once: one Maildir file per distinct recipient, nothing else.
    const msgs = await s.postfix.messages();
    const byRcpt = new Map<string, number>();
    for (const m of msgs) byRcpt.set(m.recipient ?? '?', (byRcpt.get(m.recipient ?? '?') ?? 0) + 1);
    const expected = s.relays.flatMap((_, i) =>
      Array.from({ length: perRelay }, (_, k) => `${k + 1}${users[i]}@${DOMAIN}`),
    );
    const lost = expected.filter((r) => !byRcpt.has(r)).length;
    const duplicated = [...byRcpt.values()].filter((c) => c > 1).length;
    const unexpected = [...byRcpt.keys()].filter((r) => !expected.includes(r)).length;
    const sinkRcpts = (await sink.dump()).match(/^X-Rcpt-Args: <([^>]+)>/gm) ?? [];
    const sinkDup = sinkRcpts.length - new Set(sinkRcpts).size;

    // ------------------------------------------------------------ report
    const rows = outages.map(
      (o, i) =>
        `| ${i + 1} | ${o.stopMs} | ${o.detectMs} | ${o.relaysMs} | ${o.relaysMs - o.detectMs} | ${o.startMs} | ${o.recoverMs} |`,
    );
    const achieved = total / replaySeconds;
    console.log(
      [
        '',
        `## Failover: ${OUTAGES} outages, health period ${PERIOD_S}s, failureThreshold ${FAILURES}, successThreshold ${SUCCESSES}, 2 relays (ms)`,
        '',
        '| # | postfix stop | FailoverActive=True | all relays active | relays after API | postfix start | FailoverActive=False |',
        '|---:|---:|---:|---:|---:|---:|---:|',
        ...rows,
        `| min / median / max | ${stats(outages.map((o) => o.stopMs))} | ${stats(outages.map((o) => o.detectMs))} | ${stats(outages.map((o) => o.relaysMs))} | ${stats(outages.map((o) => o.relaysMs - o.detectMs))} | ${stats(outages.map((o) => o.startMs))} | ${stats(outages.map((o) => o.recoverMs))} |`,
        '',
        `goal: detection <= ${FAILURES} x ${PERIOD_S}s + 5 s = ${FAILURES * PERIOD_S * 1000 + 5000} ms: ${outages.every((o) => o.detectMs <= FAILURES * PERIOD_S * 1000 + 5000) ? 'met' : 'NOT met'} in every outage`,
        `goal: every relay active < 5 s after the API says so: ${outages.every((o) => o.relaysMs - o.detectMs < 5000) ? 'met' : 'NOT met'} in every outage`,
        '',
        `## Replay of ${total} messages, recovery.maxMessagesPerSecond ${RATE} (2 relays, ${Math.ceil(RATE / 2)}/s each)`,
        '',
        `intake during the outage: ${total} in ${(queuedMs / 1000).toFixed(1)} s (${((total * 1000) / queuedMs).toFixed(0)}/s); backup copies at smtp-sink after ${(backupMs / 1000).toFixed(1)} s; status.lastFailover.messagesToBackup ${messagesToBackup}`,
        `FailoverActive=False ${tOff - t1} ms after the postfix start call (the start itself: ${replayStartMs} ms until the port answered)`,
        `first message at Postfix ${((tFirst - tOff) / 1000).toFixed(2)} s after FailoverActive=False`,
        `all ${total} at Postfix ${replaySeconds.toFixed(2)} s after the port answered, ${((tDone - tOff) / 1000).toFixed(2)} s after FailoverActive=False (Maildir polled every 250 ms)`,
        `already at Postfix when FailoverActive=False was first seen: ${beforeOff} (paced retries of the relays from the moment Exchange answered)`,
        `achieved ${achieved.toFixed(1)} msg/s = ${((achieved / RATE) * 100).toFixed(0)} % of the configured ${RATE}/s`,
        `status.lastFailover at the end: ${JSON.stringify(stEnd.lastFailover)} (ReplayCompleted events: ${replayCompletedEvents}, one per outage expected: ${OUTAGES + 1})`,
        `exactly once at Postfix: ${msgs.length} files, lost ${lost}, duplicated ${duplicated}, unexpected ${unexpected}; smtp-sink copies ${sinkRcpts.length}, duplicated ${sinkDup}`,
        '',
        'samples (s since FailoverActive=False: Postfix / relays replayed / status messagesReplayed / status replayRemaining):',
        ...samples.map(
          (x) =>
            `  ${(x.t / 1000).toFixed(1)}: ${x.postfix} / ${x.relayReplayed} / ${x.statusReplayed ?? '-'} / ${x.remaining ?? '-'}`,
        ),
        '',
        `total bench time ${((Date.now() - t00) / 1000).toFixed(0)} s`,
      ].join('\n'),
    );
    console.log(
      JSON.stringify({
        outages,
        replay: { total, rate: RATE, queuedMs, replaySeconds, achieved, lost, duplicated, unexpected, sinkDup },
      }),
    );
    if (lost || duplicated || unexpected) process.exitCode = 1;
  } finally {
    await stopAll();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
