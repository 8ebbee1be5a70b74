// The timeline of `make demo`, shared with its e2e test (test/e2e/demo.test.ts):
// mail while Exchange is up, an Exchange outage, mail during it (one message
// excluded by policy), Exchange back and the replay, then the final table.
// Every number in the table is counted from what Exchange (Postfix's
// Maildirs), Gmail (the emulator's mailboxes) and the relay's audit log hold.
import type { GmailEmulator } from './gmail-emulator.js';
import type { PostfixInstance } from './postfix.js';
import { swaks } from './smtp-tools.js';
import { waitFor } from './wait.js';

/** Where the timeline runs: the product in the one-node cluster, or the local stack (relay as a process). */
export interface DemoTarget {
  namespace: string;
  name: string;
  kubectl(args: string[]): string;
  postfix: PostfixInstance;
  gmail: GmailEmulator;
  /** Where senders connect: the relay Service (cluster) or the relay process. */
  smtp: { host: string; port: number };
  get(): { status?: { lastFailover?: unknown } };
  condition(type: string): { status: string; message: string } | undefined;
  events(): { reason: string }[];
  /** The first relay's audit log lines. */
  auditLog(): Promise<string[]>;
  /** Printed after the first `kubectl get mc`. */
  note?: string;
  /** `kubectl get pods,pvc,svc` of the MailContinuity's namespace, shown as the outage starts. */
  workloads?(): string;
}

export interface DemoTable {
  sent: number;
  accepted: number;
  atExchange: number;
  atGmail: number;
  excluded: number;
  lost: number;
  duplicated: number;
  phases: { name: string; seconds: number }[];
}

export const DEMO_USER = 'alice@corp.example.com';

/** The final table of the timeline when all goes well (its phase timings aside). */
export const EXPECTED_DEMO_TABLE: Omit<DemoTable, 'phases'> = {
  sent: 7,
  accepted: 7,
  atExchange: 7,
  atGmail: 3,
  excluded: 1,
  lost: 0,
  duplicated: 0,
};
const CONFIDENTIAL = 'Company-Confidential';

export async function runTimeline(
  stack: DemoTarget,
  say: (text: string) => void,
  show: (text: string) => void,
  startedAt = Date.now(),
): Promise<DemoTable> {
  const ns = stack.namespace;
  const phases: DemoTable['phases'] = [];
  let phaseStart = startedAt;
  const endPhase = (name: string) => {
    phases.push({ name, seconds: (Date.now() - phaseStart) / 1000 });
    phaseStart = Date.now();
  };
  const sent: string[] = [];
  let accepted = 0;
  const send = async (subject: string, headers: string[] = []) => {
    const id = `demo-${sent.length + 1}@partner.example.net`;
    const r = await swaks({
      host: stack.smtp.host,
      port: stack.smtp.port,
      to: DEMO_USER,
      headers: [`Message-ID: <${id}>`, `Subject: ${subject}`, ...headers],
    });
    if (r.code !== 0) throw new Error(`swaks failed: ${r.replies.join(' | ')}`);
    sent.push(id);
    // The sender's own count: the reply to the end of DATA.
    if (/^250 /.test(r.replies.at(-2) ?? '')) accepted++;
    show(`  swaks -> relay: ${r.replies.at(-2) ?? ''}  (Message-ID <${id}>, "${subject}")`);
    return id;
  };
  const gmailIds = () => stack.gmail.messages(DEMO_USER).map((m) => m.rfc822MessageId ?? '');
  const getMc = () => show(stack.kubectl(['-n', ns, 'get', 'mc', stack.name]).trimEnd());
  const events = () =>
    show(
      stack
        .kubectl([
          '-n',
          ns,
          'get',
          'events',
          '--field-selector',
          `involvedObject.name=${stack.name}`,
          '--sort-by=.lastTimestamp',
          '-o',
          'custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message',
        ])
        .trimEnd(),
    );
  const condition = (t: string) => stack.condition(t);

  say('waiting for the operator to probe Exchange (PrimaryHealthy)');
  await waitFor('PrimaryHealthy=True', () => condition('PrimaryHealthy')?.status === 'True', 60_000);
  getMc();
  if (stack.note) show(stack.note);
  endPhase('start-up until Exchange is probed healthy');

  say('Exchange is up: 3 messages go to Exchange only (FailoverOnly)');
  const before: string[] = [];
  for (let i = 1; i <= 3; i++) before.push(await send(`before the outage #${i}`));
  await stack.postfix.waitFor(
    (m) => before.every((id) => m.some((x) => x.messageId === id)),
    60_000,
    'the first mail at Exchange',
  );
  show(`  at Exchange: ${(await stack.postfix.messages()).length}, at Gmail: ${gmailIds().length}`);
  endPhase('mail while Exchange is up');

  if (stack.workloads) {
    say(`what runs in the cluster (kubectl -n ${ns} get pods,pvc,svc):`);
    show(stack.workloads().trimEnd());
  }
  say('stopping Exchange (postfix stop)');
  await stack.postfix.stop();
  await waitFor('FailoverActive=True', () => condition('FailoverActive')?.status === 'True', 60_000, 100);
  say(`FailoverActive=True: ${condition('FailoverActive')?.message ?? ''}`);
  getMc();
  await waitFor('the FailoverStarted event', () => stack.events().some((e) => e.reason === 'FailoverStarted'), 15_000);
  events();
  endPhase('outage detected (probes -> FailoverActive -> relay told)');

  say('mail during the outage: 3 messages, and 1 marked "Sensitivity: Company-Confidential"');
  const during: string[] = [];
  for (let i = 1; i <= 3; i++) during.push(await send(`during the outage #${i}`));
  const secret = await send('board minutes', [`Sensitivity: ${CONFIDENTIAL}`]);
  await waitFor('the outage mail in Gmail', () => during.every((id) => gmailIds().includes(id)), 60_000);
  show(`  at Gmail (${DEMO_USER}): ${gmailIds().length} messages: ${gmailIds().join(', ')}`);
  const audit = await stack.auditLog();
  say('the audit log (every copy to Google and every exclusion, one JSON line each):');
  for (const line of audit) {
    const r = JSON.parse(line) as {
      time: string;
      action: string;
      messageId: string;
      to: string[];
      rule: string | null;
      sha256: string;
    };
    show(
      `  ${r.time} ${r.action.padEnd(16)} <${r.messageId}> to ${r.to.join(',')}${r.rule ? ` rule=${r.rule}` : ''} sha256=${r.sha256.slice(0, 12)}…`,
    );
  }
  endPhase('mail during the outage reaches Gmail');

  say('starting Exchange again (postfix start): failover ends, the relay replays what Exchange missed');
  await stack.postfix.start();
  await waitFor('FailoverActive=False', () => condition('FailoverActive')?.status === 'False', 60_000, 100);
  await waitFor('the ReplayCompleted event', () => stack.events().some((e) => e.reason === 'ReplayCompleted'), 120_000);
  getMc();
  events();
  const lf = stack.get().status?.lastFailover;
  show(`  status.lastFailover: ${JSON.stringify(lf)}`);
  endPhase('recovery and replay');

  const counts = await stack.postfix.countByMessageId();
  const g = gmailIds();
  const excluded = audit.filter((l) => l.includes('"excluded"')).length;
  const table: DemoTable = {
    sent: sent.length,
    accepted,
    atExchange: sent.filter((id) => counts.has(id)).length,
    atGmail: new Set(g).size,
    excluded,
    lost: sent.filter((id) => !counts.has(id)).length,
    duplicated: sent.filter((id) => (counts.get(id) ?? 0) > 1).length + (g.length - new Set(g).size),
    phases,
  };
  if (g.includes(secret)) throw new Error('the confidential message reached Gmail');
  return table;
}

export function formatTable(t: DemoTable): string {
  const rows: [string, string][] = [
    ['sent (swaks)', String(t.sent)],
    ['accepted by the relay (250)', String(t.accepted)],
    ['at Exchange (once each)', String(t.atExchange)],
    ['at Gmail', String(t.atGmail)],
    ['excluded by policy', String(t.excluded)],
    ['lost', String(t.lost)],
    ['duplicated', String(t.duplicated)],
    ...t.phases.map((p): [string, string] => [`time: ${p.name}`, `${p.seconds.toFixed(1)} s`]),
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join('\n');
}
