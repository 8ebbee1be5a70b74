// Rules follow changes, operator to relay: during an Exchange outage (failover
// active) with Gmail failing too, copies wait in the relay's spool; a rule
// added to the MailContinuity (kubectl patch) is rendered by the operator into
// the relay ConfigMap, the relays restart from it (what the config hash in the
// pod template does), and the copy the new rule names never reaches Gmail once
// it answers again, audited with the rule; the other copy does. Exchange then
// gets both (the replay). Real apiserver, operator and relay processes,
// Postfix as Exchange, the Gmail emulator.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { swaks } from '../harness/smtp-tools.js';
import { FAST_RELAY_TUNING, loopbackSpec, startStack, type Stack } from '../harness/stack.js';
import { waitFor } from '../harness/wait.js';

const USER = 'alice@corp.example.com';
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    name: 'rules',
    relays: 1,
    domains: ['corp.example.com'],
    gmailUsers: [USER],
    spec: loopbackSpec({ domain: 'corp.example.com', periodSeconds: 1, failureThreshold: 2, successThreshold: 2, messageDeadline: '15m', maxMessagesPerSecond: 50 }),
    tuning: FAST_RELAY_TUNING,
    progress: (l) => process.env.MC_TEST_LOG && console.log(l),
  });
}, 240_000);

afterAll(async () => {
  await stack?.stop();
}, 60_000);

const atGmail = () => stack.gmail.messages(USER).map((m) => m.rfc822MessageId);

describe('a rule added during an outage', () => {
  it('stops copies of mail already spooled, through the operator, the ConfigMap and a relay restart', async () => {
    stack.gmail.failNext(1_000_000_000); // Gmail answers 503: copies wait in the spool
    await stack.postfix.stop();
    await waitFor('FailoverActive', () => stack.condition('FailoverActive')?.status === 'True', 30_000);
    await waitFor('the relay told', async () => (await stack.relayState(0)).active, 15_000);
    for (const [id, project] of [['apollo@partner.example.net', '=?utf-8?q?Apollo?='], ['other@partner.example.net', 'Gemini']]) {
      const r = await swaks({ port: stack.smtp.port, to: USER, headers: [`Message-ID: <${id}>`, `X-Project: ${project}`] });
      expect(r.code).toBe(0);
    }
    await waitFor('both copies waiting for Gmail', async () => (await stack.relayState(0)).queuedBackup === 2, 30_000);
    expect(atGmail()).toEqual([]);

    stack.kubectl(
      ['-n', stack.namespace, 'patch', 'mailcontinuity', stack.name, '--type', 'merge', '-p', JSON.stringify({ spec: { policy: { exclude: [{ name: 'apollo', header: { name: 'X-Project', value: 'apollo' } }] } } })],
    );
    await stack.rollRelays((yaml) => yaml.includes('apollo'));
    stack.gmail.failNext(0);

    await waitFor('the other copy at Gmail', () => atGmail().includes('other@partner.example.net'), 60_000);
    await waitFor('no copy left waiting', async () => (await stack.relayState(0)).queuedBackup === 0, 30_000);
    expect(atGmail()).not.toContain('apollo@partner.example.net');
    const audit = (await stack.auditLog()).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit.filter((a) => a.messageId === 'apollo@partner.example.net' && a.action !== 'copy-intent')).toEqual([expect.objectContaining({ action: 'excluded', rule: 'apollo' })]);
    expect(audit.filter((a) => a.messageId === 'other@partner.example.net').map((a) => a.action).slice(-2)).toEqual(['copy-intent', 'copied-to-backup']);

    // Exchange back: failover ends and the replay brings it both.
    await stack.postfix.start();
    await stack.postfix.waitFor((m) => ['apollo', 'other'].every((id) => m.some((x) => x.messageId === `${id}@partner.example.net`)), 90_000, 'both at Exchange');
  }, 300_000);
});
