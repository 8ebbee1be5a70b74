// The relay with backup method GmailApi: the Gmail transport (loaded at
// runtime) imports into the emulator, Postfix gets the primary copy, the audit
// log names the copy; an excluded message never reaches the emulator.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import type { GmailEmulator } from '../harness/gmail-emulator.js';
import { gmailRelayConfig, startGmailRelayParts, type GmailRelayParts } from '../harness/gmail-relay-config.js';
import type { PostfixInstance } from '../harness/postfix.js';
import { swaks } from '../harness/smtp-tools.js';
import { waitUntil } from '../harness/wait.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
let postfix: PostfixInstance;
let emu: GmailEmulator;
let dir: string;
let relay: Relay | undefined;

let parts: GmailRelayParts | undefined;

beforeAll(async () => {
  parts = await startGmailRelayParts('relay-gmail-', ['alice@corp.example.org', 'bob@corp.example.org']);
  ({ dir, postfix, emu } = parts);
}, 60_000);

afterAll(() => parts?.close(relay), 60_000);

describe('relay with the Gmail API backup', () => {
  it('DualDelivery: Postfix and the Gmail mailbox (mapped address) each get the message once; exclusions hold', async () => {
    const config = await gmailRelayConfig({
      dir,
      emu,
      primaryPort: postfix.port,
      instance: 'gmail-e2e',
      exclude: [{ name: 'confidential', header: { name: 'Sensitivity', value: 'Company-Confidential' } }],
    });
    relay = await startRelay(config, { log });
    const a = await swaks({ port: relay.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <gmail-1@partner.example.net>'] });
    const b = await swaks({ port: relay.smtpPort, to: 'bob@corp.example.com', headers: ['Message-ID: <gmail-conf@partner.example.net>', 'Sensitivity: Company-Confidential'] });
    expect([a.code, b.code]).toEqual([0, 0]);
    await waitUntil('spool empty', 60_000, () => relay!.scheduler.size === 0);
    const imported = emu.messages('alice@corp.example.org');
    expect(imported.map((m) => m.rfc822MessageId)).toEqual(['gmail-1@partner.example.net']);
    expect(imported[0]!.raw.toString()).toMatch(/^Received: from mx\.partner\.example\.net/);
    expect(emu.messages('bob@corp.example.org')).toEqual([]);
    await postfix.waitFor((m) => ['gmail-1', 'gmail-conf'].every((id) => m.some((x) => x.messageId === `${id}@partner.example.net`)), 30_000, 'both at Postfix');
    const counts = await postfix.countByMessageId();
    expect(counts.get('gmail-1@partner.example.net')).toBe(1);
    expect(counts.get('gmail-conf@partner.example.net')).toBe(1);
    const audit = (await readFile(join(dir, 'spool', 'audit.log'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).filter((a) => a.action !== 'genesis');
    expect(audit).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ messageId: 'gmail-1@partner.example.net', action: 'copy-intent', to: ['alice@corp.example.com'] }),
        expect.objectContaining({ messageId: 'gmail-1@partner.example.net', action: 'copied-to-backup', to: ['alice@corp.example.com'] }),
        expect.objectContaining({ messageId: 'gmail-conf@partner.example.net', action: 'excluded', rule: 'confidential' }),
      ]),
    );
    expect(audit).toHaveLength(3);
  }, 120_000);
});
