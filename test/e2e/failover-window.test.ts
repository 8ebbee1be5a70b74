// A planned maintenance window and the Gmail side checked before it is
// needed, on the whole stack: a real apiserver, the operator process, a relay
// process from the config the operator rendered, Postfix as Exchange and the
// Gmail emulator.
//   - BackupReachable=True from the relay's token grant for the canary mailbox;
//   - a window a few seconds long, added to the spec, starts and ends by itself:
//     mail sent during it goes to Gmail and waits for Exchange (healthy all along),
//     then is replayed to Postfix once it ends, with Events at start and end;
//   - the service account key revoked in the emulator: BackupReachable=False
//     KeyRejected, naming the fix, with no mail sent.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import YAML from 'yaml';
import { swaks } from '../harness/smtp-tools.js';
import { FAST_RELAY_TUNING, loopbackSpec, startStack, type Stack } from '../harness/stack.js';
import { waitFor } from '../harness/wait.js';

const USER = 'alice@corp.example.com';
const CANARY = 'mc-canary@corp.example.com';
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    name: 'corp',
    namespace: 'mail',
    domains: ['corp.example.com'],
    gmailUsers: [USER, CANARY],
    spec: loopbackSpec({
      domain: 'corp.example.com',
      periodSeconds: 1,
      failureThreshold: 2,
      successThreshold: 1,
      messageDeadline: '15m',
      maxMessagesPerSecond: 20,
      backup: {
        gmail: { method: 'GmailApi', serviceAccountSecretRef: { name: 'gmail-service-account' }, canaryMailbox: CANARY },
      },
    }),
    tuning: { ...FAST_RELAY_TUNING, backupCheckIntervalMs: 500 },
    progress: (l) => process.env.MC_TEST_LOG && console.log(l),
  });
}, 240_000);

afterAll(async () => {
  await stack?.stop();
}, 60_000);

const reasonOf = (type: string) => stack.condition(type)?.reason;
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

describe('the Gmail side known before it is needed, and a maintenance window', () => {
  it('reports BackupReachable=True from a token grant for the canary mailbox, before any mail went to Gmail', async () => {
    await waitFor('BackupReachable=True', () => stack.condition('BackupReachable')?.status === 'True', 60_000);
    expect(stack.condition('BackupReachable')).toMatchObject({ reason: 'TokenGranted', message: expect.stringContaining(CANARY) });
    expect(stack.gmail.tokensIssued(CANARY)).toBeGreaterThan(0);
    expect(stack.gmail.messages(CANARY)).toEqual([]);
    expect(stack.gmail.messages(USER)).toEqual([]);
  }, 90_000);

  it('a window of a few seconds: failover by itself, mail to Gmail and held for Exchange, replayed when it ends', async () => {
    await waitFor('PrimaryHealthy=True', () => stack.condition('PrimaryHealthy')?.status === 'True', 60_000);
    const start = Math.ceil((Date.now() + 4000) / 1000) * 1000;
    const end = start + 12_000;
    const patch = { spec: { failover: { schedule: [{ start: iso(start), end: iso(end), description: 'Exchange CU14' }] } } };
    stack.kubectl(['-n', stack.namespace, 'patch', 'mailcontinuity', stack.name, '--type=merge', '-p', JSON.stringify(patch)]);
    await waitFor('status.schedule.nextWindow', () => stack.get().status !== undefined && YAML.stringify(stack.get().status).includes('nextWindow'), 10_000);
    expect(reasonOf('FailoverActive')).toBe('PrimaryHealthy');

    await waitFor('FailoverActive=True', () => stack.condition('FailoverActive')?.status === 'True', 15_000, 100);
    expect(Date.now()).toBeGreaterThanOrEqual(start);
    expect(reasonOf('FailoverActive')).toBe('MaintenanceWindow');
    await waitFor('the relay holds mail for Exchange', async () => {
      const s = (await stack.relayState(0)) as { active: boolean; holdPrimary?: boolean };
      return s.active && s.holdPrimary === true;
    }, 10_000, 100);

    const ids = [1, 2, 3].map((i) => `window-${i}-${start}@partner.example.net`);
    for (const id of ids) {
      const r = await swaks({ port: stack.smtp.port, to: USER, headers: [`Message-ID: <${id}>`, 'Subject: during the patch window'] });
      expect(r.code).toBe(0);
    }
    await waitFor('the window mail in Gmail', () => ids.every((id) => stack.gmail.messages(USER).some((m) => m.rfc822MessageId === id)), 15_000);
    // Exchange answers its probes all along, yet gets nothing while the window lasts.
    expect(Date.now()).toBeLessThan(end);
    expect(stack.condition('PrimaryHealthy')?.status).toBe('True');
    const during = await stack.postfix.countByMessageId();
    expect(ids.filter((id) => during.has(id))).toEqual([]);
    expect((await stack.relayState(0)).queuedPrimary).toBeGreaterThanOrEqual(3);

    await waitFor('FailoverActive=False', () => stack.condition('FailoverActive')?.status === 'False', 20_000, 100);
    expect(Date.now()).toBeGreaterThanOrEqual(end);
    await waitFor('the window mail at Exchange', async () => {
      const at = await stack.postfix.countByMessageId();
      return ids.every((id) => at.get(id) === 1);
    }, 30_000);
    await waitFor('ReplayCompleted', () => stack.events().some((e) => e.reason === 'ReplayCompleted'), 30_000);
    const events = stack.events();
    expect(events.find((e) => e.reason === 'FailoverStarted')?.message).toContain(`maintenance window ${iso(start)} – ${iso(end)} (Exchange CU14)`);
    expect(events.find((e) => e.reason === 'FailoverEnded')?.message).toMatch(/^the maintenance window is over: failover ended/);
    expect(stack.get().status?.lastFailover).toMatchObject({ trigger: 'Scheduled', start: iso(start), messagesToBackup: 3 });
    // Exactly once each, in both places.
    expect(ids.map((id) => stack.gmail.messages(USER).filter((m) => m.rfc822MessageId === id).length)).toEqual([1, 1, 1]);
  }, 120_000);

  it('says BackupReachable=False KeyRejected, and what to do, once the service account key is revoked', async () => {
    stack.gmail.revokeKey();
    await waitFor('BackupReachable=False', () => stack.condition('BackupReachable')?.status === 'False', 60_000);
    expect(stack.condition('BackupReachable')).toMatchObject({
      reason: 'KeyRejected',
      message: expect.stringContaining('create a new JSON key and put it in the Secret of spec.backup.gmail.serviceAccountSecretRef'),
    });
    expect(stack.condition('BackupReachable')?.message).toContain(`1 of 1 relays got no access token from Google's token endpoint for ${CANARY}`);
  }, 90_000);
});
