// Rules follow changes: copies for the backup that are still waiting when the
// relay restarts with new exclusion rules (a ConfigMap change rolls the relay)
// are decided again under the new rules before they leave, on the header
// section read back from the queue file, even for a header no rule named when
// the message was spooled. The control message still reaches the backup.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { relayTestConfig, startSmtpSink, swaks, TEST_DOMAINS, type SmtpSink } from '../harness/smtp-tools.js';
import { waitUntil } from '../harness/wait.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
let postfix: PostfixInstance;
let sink: SmtpSink | undefined;
let dir: string;
let relay: Relay | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-rule-change-'));
  postfix = await startPostfix({ domains: TEST_DOMAINS });
}, 60_000);

afterAll(async () => {
  await relay?.stop().catch(() => undefined);
  await sink?.stop();
  await postfix?.destroy();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

describe('exclusion rules follow a config change', () => {
  it('a rule added while copies wait stops them; the other copy leaves', async () => {
    const spool = join(dir, 'spool');
    const spec = { mode: 'DualDelivery' as const, failover: {} };
    // Before: the backup is unreachable (port 9), so both copies wait in the spool.
    relay = await startRelay(relayTestConfig({ spool, primaryPort: postfix.port, spec }), { log });
    const a = await swaks({ port: relay.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <apollo@partner.example.net>', 'X-Project: =?utf-8?q?Apollo?='] });
    const b = await swaks({ port: relay.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <other@partner.example.net>', 'X-Project: Gemini'] });
    expect([a.code, b.code]).toEqual([0, 0]);
    await waitUntil('both at the primary, both copies waiting', 30_000, () => relay!.scheduler.queueDepth('primary') === 0 && relay!.scheduler.queueDepth('backup') === 2);
    await relay.stop();

    // After: a rule on a header nobody named at intake, and the backup up.
    sink = await startSmtpSink();
    const rules = { exclude: [{ name: 'apollo', header: { name: 'X-Project', value: 'apollo' } }] };
    relay = await startRelay(relayTestConfig({ spool, primaryPort: postfix.port, backupPort: sink.port, spec: { ...spec, policy: rules } }), { log });
    await waitUntil('spool empty', 60_000, () => relay!.scheduler.size === 0);
    expect(await sink.messageIds()).toEqual(['other@partner.example.net']);
    const audit = (await readFile(join(spool, 'audit.log'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    // One intent per attempt at the backup (written ahead, also while it was down), then the outcomes.
    const outcomes = audit.filter((a) => a.action !== 'copy-intent' && a.action !== 'genesis');
    expect(outcomes).toHaveLength(2);
    expect(outcomes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ messageId: 'apollo@partner.example.net', action: 'excluded', rule: 'apollo' }),
        expect.objectContaining({ messageId: 'other@partner.example.net', action: 'copied-to-backup' }),
      ]),
    );
    const other = audit.filter((a) => a.messageId === 'other@partner.example.net').map((a) => a.action);
    expect(other.slice(-2)).toEqual(['copy-intent', 'copied-to-backup']);
  }, 120_000);
});
