// A crafted corpus against the running relay (real SMTP in, Postfix as
// Exchange, the Gmail emulator as the backup, DualDelivery so every message is
// due a copy): each evasion of an exclusion rule must still keep its message
// away from Google with the audit naming why, and each control message without
// a marker must reach Google, so the test fails both ways. Adversarial globs
// against 16 KB values must leave the event loop free (/healthz under 100 ms).
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import type { GmailEmulator } from '../harness/gmail-emulator.js';
import { gmailRelayConfig, startGmailRelayParts, type GmailRelayParts } from '../harness/gmail-relay-config.js';
import type { PostfixInstance } from '../harness/postfix.js';
import { RawSmtp } from '../harness/smtp-tools.js';
import { waitUntil } from '../harness/wait.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
const USERS = ['alice@corp.example.org', 'ceo@corp.example.org'];
const ADVERSARIAL = ['*x*y*z*', '*a*a*a*a*a*a*a*b', '*x?x?x?x?x?x?z*', '*y*x*', `*${'x'.repeat(40)}z*`];
let postfix: PostfixInstance;
let emu: GmailEmulator;
let dir: string;
let relay: Relay;
let parts: GmailRelayParts | undefined;

beforeAll(async () => {
  parts = await startGmailRelayParts('relay-leak-', USERS);
  ({ dir, postfix, emu } = parts);
  const config = await gmailRelayConfig({
    dir,
    emu,
    primaryPort: postfix.port,
    instance: 'leak-corpus',
    exclude: [
      // Evaluated first, for every message: they never match the corpus.
      ...ADVERSARIAL.map((value, i) => ({ name: `adversarial-${i}`, header: { name: 'X-Tag', value } })),
      { name: 'confidential', header: { name: 'Sensitivity', value: 'Company-Confidential' } },
      { name: 'secret-subject', header: { name: 'Subject', value: '*streng vertraulich*' } },
      { name: 'ceo', recipient: 'ceo@corp.example.com' },
      { name: 'hr', sender: '*@hr.corp.example.com' },
      // The last rule: mail to sink@ is evaluated against every rule above, then kept from Google
      // (no import work in this process, so /healthz measures the policy, not the emulator).
      { name: 'sink', recipient: 'sink@corp.example.com' },
    ],
  });
  relay = await startRelay(config, { log });
}, 60_000);

afterAll(() => parts?.close(relay), 60_000);

const filler = (bytes: number) => {
  const line = `X-Filler: ${'f'.repeat(70)}\r\n`;
  return line.repeat(Math.ceil(bytes / line.length));
};

interface Case {
  name: string;
  /** Header lines (CRLF unless the case says otherwise) before the Message-ID is added. */
  head: string;
  body?: string;
  rcpt?: string;
  /** The envelope sender (default sender@partner.example.net; '' is the null sender <>). */
  mailFrom?: string;
  /** Bare LF line ends instead of CRLF. */
  lf?: boolean;
  smtputf8?: boolean;
  /** The rule the audit must name; undefined for a control that must reach Google. */
  rule?: string | RegExp;
  /** Write the data in pieces cut at these byte offsets (TCP splits). */
  cuts?: number[];
}

const corpus: Case[] = [
  { name: 'marker after 200 KB of other headers', head: `${filler(200 * 1024)}Sensitivity: Company-Confidential\r\n`, rule: 'confidential' },
  { name: 'marker after 200 KB, split across the old 64 KiB cut', head: `${filler(200 * 1024)}Sensitivity: Company-Confidential\r\n`, rule: 'confidential', cuts: [65535, 65537, 65540, 131072] },
  { name: 'header section over 1 MiB', head: `${filler(1100 * 1024)}Sensitivity: Company-Confidential\r\n`, rule: /^unevaluated: header section over 1048576 bytes$/ },
  { name: 'folded value', head: 'Sensitivity:\r\n Company-Confidential\r\n', rule: 'confidential' },
  { name: 'folded with tabs and trailing space', head: 'Sensitivity:\t\r\n\t Company-Confidential \r\n', rule: 'confidential' },
  { name: 'name and value in other case', head: 'SENSITIVITY: company-CONFIDENTIAL\r\n', rule: 'confidential' },
  { name: 'space before the colon', head: 'Sensitivity : Company-Confidential\r\n', rule: 'confidential' },
  { name: 'duplicate field, marker second', head: 'Sensitivity: Personal\r\nSensitivity: Company-Confidential\r\n', rule: 'confidential' },
  { name: 'RFC 2047 q', head: 'Sensitivity: =?utf-8?q?Company=2DConfidential?=\r\n', rule: 'confidential' },
  { name: 'RFC 2047 b', head: 'Sensitivity: =?UTF-8?B?Q29tcGFueS1Db25maWRlbnRpYWw=?=\r\n', rule: 'confidential' },
  { name: 'RFC 2047 split words', head: 'Sensitivity: =?utf-8?q?Company-?=\r\n =?iso-8859-1?q?Confidential?=\r\n', rule: 'confidential' },
  { name: 'comment', head: 'Sensitivity: Company-Confidential (do not forward)\r\n', rule: 'confidential' },
  { name: 'quoted', head: 'Sensitivity: "Company-Confidential"\r\n', rule: 'confidential' },
  { name: 'bare LF lines', head: 'Subject: lf\nSensitivity: Company-Confidential\n', lf: true, rule: 'confidential' },
  { name: 'bare LF folding', head: 'Sensitivity:\n Company-Confidential\n', lf: true, rule: 'confidential' },
  { name: '8-bit UTF-8 subject (SMTPUTF8)', head: 'Subject: Q3 – STRENG VERTRAULICH – Zahlen\r\n', smtputf8: true, rule: 'secret-subject' },
  { name: 'encoded UTF-8 subject', head: 'Subject: =?utf-8?q?Q3_=E2=80=93_Streng_vertraulich?=\r\n', rule: 'secret-subject' },
  { name: 'quoted local part recipient', head: 'Subject: hi\r\n', rcpt: '"ceo"@corp.example.com', rule: 'ceo' },
  { name: 'recipient domain in capitals', head: 'Subject: hi\r\n', rcpt: 'ceo@CORP.Example.COM', rule: 'ceo' },
  // Envelope vs header: a sender rule matches MAIL FROM or any From:/Sender: address; a recipient rule the envelope recipient.
  { name: 'envelope sender HR, From: someone else', head: 'From: Someone <someone@partner.example.net>\r\n', mailFrom: 'boss@hr.corp.example.com', rule: 'hr' },
  { name: 'From: HR, envelope sender someone else', head: 'From: HR <boss@hr.corp.example.com>\r\n', rule: 'hr' },
  { name: 'From: HR, null envelope sender', head: 'From: boss@hr.corp.example.com\r\n', mailFrom: '', rule: 'hr' },
  { name: 'Sender: HR', head: 'From: Someone <someone@partner.example.net>\r\nSender: boss@hr.corp.example.com\r\n', rule: 'hr' },
  { name: 'From: HR quoted, capitals, comment', head: 'From: "boss"@HR.Corp.Example.COM (HR)\r\n', rule: 'hr' },
  { name: 'From: HR second in the list, encoded name', head: 'From: a@partner.example.net, =?utf-8?q?Gr=C3=BC=C3=9Fe?= <boss@hr.corp.example.com>\r\n', rule: 'hr' },
  { name: 'From: HR folded', head: 'From: HR\r\n <boss@hr.corp.example.com>\r\n', rule: 'hr' },
  { name: 'envelope recipient ceo, To: someone else', head: 'To: alice@corp.example.com\r\n', rcpt: 'ceo@corp.example.com', rule: 'ceo' },
  // Controls: no marker, so a copy reaches Google.
  { name: 'control: To: names the ceo, envelope recipient alice (a recipient rule is about whose copy)', head: 'To: ceo@corp.example.com\r\n' },
  { name: 'control: Reply-To: HR (not the author)', head: 'From: someone@partner.example.net\r\nReply-To: boss@hr.corp.example.com\r\n' },
  { name: 'control: From: a look-alike of HR', head: 'From: boss@hr.corp.example.com.evil.example\r\n' },
  { name: 'control: plain', head: 'Subject: quarterly numbers\r\n' },
  { name: 'control: another sensitivity', head: 'Sensitivity: Personal\r\n' },
  { name: 'control: a longer value than the rule', head: 'Sensitivity: Company-Confidential-Draft\r\n' },
  { name: 'control: 200 KB of headers', head: filler(200 * 1024), cuts: [65536] },
  { name: 'control: bare LF', head: 'Subject: lf\n', lf: true },
  { name: 'control: 8-bit UTF-8 subject', head: 'Subject: Grüße – vertraulich? nein\r\n', smtputf8: true },
  { name: 'control: encoded subject', head: 'Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n' },
  { name: 'control: adversarial globs, 16 KB value', head: `X-Tag: ${'x'.repeat(8192)}${'y'.repeat(8192)}\r\n` },
];

const idOf = (i: number) => `leak-${i}@partner.example.net`;

async function send(c: Case, i: number): Promise<void> {
  const nl = c.lf ? '\n' : '\r\n';
  const data = Buffer.from(`Message-ID: <${idOf(i)}>${nl}${c.head}${nl}${c.body ?? 'body'}${nl}`);
  const s = await RawSmtp.open(relay.smtpPort);
  try {
    expect(await s.reply()).toMatch(/^220/);
    expect(await s.cmd('EHLO mx.partner.example.net')).toMatch(/^250/);
    expect(await s.cmd(`MAIL FROM:<${c.mailFrom ?? 'sender@partner.example.net'}>${c.smtputf8 ? ' SMTPUTF8 BODY=8BITMIME' : ''}`)).toMatch(/^250/);
    expect(await s.cmd(`RCPT TO:<${c.rcpt ?? 'alice@corp.example.com'}>`)).toMatch(/^250/);
    expect(await s.cmd('DATA')).toMatch(/^354/);
    let at = 0;
    for (const cut of [...(c.cuts ?? []), data.length]) {
      s.write(data.subarray(at, cut));
      at = cut;
      await new Promise((r) => setTimeout(r, 20));
    }
    s.write('\r\n.\r\n');
    expect(await s.reply(30_000)).toMatch(/^250/);
  } finally {
    s.close();
  }
}

function healthzMs(): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: relay.httpPort, path: '/healthz' }, (res) => {
      res.resume();
      res.on('end', () => resolve(performance.now() - started));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('exclusions against a crafted corpus', () => {
  it('keep every evasion away from Google with the reason audited, and let every control through', async () => {
    for (const [i, c] of corpus.entries()) await send(c, i);
    await waitUntil('spool empty', 120_000, () => relay.scheduler.size === 0);
    const atGoogle = new Set(USERS.flatMap((u) => emu.messages(u).map((m) => m.rfc822MessageId)));
    const audit = (await readFile(join(dir, 'spool', 'audit.log'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { messageId: string; action: string; rule: string | null });
    const outcome = corpus.map((c, i) => {
      const lines = audit.filter((a) => a.messageId === idOf(i));
      return { name: c.name, atGoogle: atGoogle.has(idOf(i)), audit: lines.map((a) => `${a.action}:${a.rule ?? ''}`) };
    });
    const expected = corpus.map((c) => ({
      name: c.name,
      atGoogle: c.rule === undefined,
      // A copy: its write-ahead intent, then the outcome; an exclusion: one line with the reason.
      audit:
        c.rule === undefined
          ? ['copy-intent:', 'copied-to-backup:']
          : [expect.stringMatching(typeof c.rule === 'string' ? new RegExp(`^excluded:${c.rule}$`) : new RegExp(`^excluded:${c.rule.source.slice(1)}`))],
    }));
    expect(outcome).toEqual(expected);
    // Exchange got every one of them.
    await postfix.waitFor((m) => corpus.every((_, i) => m.some((x) => x.messageId === idOf(i))), 60_000, 'all at Postfix');
  }, 300_000);

  it('adversarial globs against 16 KB values leave the event loop free (/healthz under 100 ms)', async () => {
    const value = `${'x'.repeat(8192)}${'y'.repeat(8192)}`;
    const base = corpus.length + 100;
    // Warm up (the Gmail client, its token, the JIT): cold starts are not what is measured.
    await Promise.all([0, 1, 2].map((k) => send({ name: 'warm-up', head: 'Subject: warm-up\r\n' }, base + 50 + k)));
    await waitUntil('spool empty', 60_000, () => relay.scheduler.size === 0);
    const latencies: number[] = [];
    let sending = true;
    const probe = (async () => {
      while (sending) {
        latencies.push(await healthzMs());
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const tag = (k: number) => `X-Tag: ${value}${k}\r\nX-Tag: ${k}${value}\r\n`;
    await Promise.all(Array.from({ length: 20 }, (_, k) => send({ name: 'adversarial', head: tag(k), rcpt: 'sink@corp.example.com' }, base + k)));
    await waitUntil('spool empty', 120_000, () => relay.scheduler.size === 0);
    sending = false;
    await probe;
    latencies.sort((a, b) => a - b);
    const p90 = latencies[Math.floor(latencies.length * 0.9)]!;
    log.info({ probes: latencies.length, p50Ms: latencies[latencies.length >> 1], p90Ms: p90, worstMs: latencies.at(-1) }, '/healthz while adversarial mail was processed');
    expect(latencies.length).toBeGreaterThan(10);
    // The 90th percentile, not the worst: on a shared 2-core machine the process is sometimes
    // descheduled for longer than that whatever it runs; a backtracking matcher blocked for seconds.
    expect(p90).toBeLessThan(100);
    // Every adversarial rule was evaluated against the 16 KB values and none matched: the last rule decided.
    const audit = await readFile(join(dir, 'spool', 'audit.log'), 'utf8');
    for (let k = 0; k < 20; k++) expect(audit).toContain(`"messageId":"${idOf(base + k)}"`);
    expect(audit.split('\n').filter((l) => l.includes('"rule":"sink"'))).toHaveLength(20);
  }, 180_000);
});
