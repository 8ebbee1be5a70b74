// The SMTP side under hostile or broken clients: SIZE, foreign recipients and
// routing tricks, foreign clients, recipient caps, no AUTH, STARTTLS/requireTLS,
// SMTP smuggling, malformed input, backpressure. Real Postfix behind the relay.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { readSpoolDir } from '../../src/relay/spool/read.js';
import type { RecipientOutcome, SpooledMessage, Transport } from '../../src/relay/types.js';
import { startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { RawSmtp, relayTestConfig, swaks } from '../harness/smtp-tools.js';
import { selfSignedCert } from '../harness/tls.js';
import { waitUntil } from '../harness/wait.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
let postfix: PostfixInstance;
let dir: string;
const relays: Relay[] = [];
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-sec-'));
  postfix = await startPostfix({ domains: ['corp.example.com', 'example.org'], recipients: ['alice@corp.example.com', 'bob@corp.example.com'] });
}, 60_000);

afterAll(async () => {
  for (const r of relays) await r.stop().catch(() => undefined);
  await postfix?.destroy();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

async function relay(opts: Omit<Parameters<typeof relayTestConfig>[0], 'spool' | 'primaryPort'> = {}, transports?: { primary?: Transport }): Promise<Relay> {
  const r = await startRelay(relayTestConfig({ spool: join(dir, `r${++n}`), primaryPort: postfix.port, instance: `sec-${n}`, ...opts }), { log, transports });
  relays.push(r);
  return r;
}

async function session(port: number): Promise<RawSmtp> {
  const s = await RawSmtp.open(port);
  expect(await s.reply()).toMatch(/^220 /);
  expect(await s.cmd('EHLO client.partner.example.net')).toMatch(/^250/);
  return s;
}

/** A self-signed certificate for the relay's STARTTLS, made once. */
let tls: { tlsCert: string; tlsKey: string } | undefined;
function tlsFiles(): { tlsCert: string; tlsKey: string } {
  if (!tls) {
    const { cert, key } = selfSignedCert(dir, 'relay.test');
    tls = { tlsCert: cert, tlsKey: key };
  }
  return tls;
}

async function spoolFiles(r: Relay): Promise<string[]> {
  return readdir(join(r.config.paths.spool, 'queue'));
}

describe('relay SMTP security', () => {
  it('advertises PIPELINING, 8BITMIME, SMTPUTF8, SIZE, no AUTH; refuses AUTH', async () => {
    const r = await relay();
    const s = await RawSmtp.open(r.smtpPort);
    await s.reply();
    const ehlo = await s.cmd('EHLO client.partner.example.net');
    for (const ext of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'SIZE 36700160']) expect(ehlo).toContain(ext);
    expect(ehlo).not.toMatch(/AUTH/);
    expect(ehlo).not.toMatch(/STARTTLS/); // no certificate configured
    expect(await s.cmd('AUTH PLAIN AGFsaWNlAHNlY3JldA==')).toMatch(/^5\d\d/);
    s.close();
  });

  it('SIZE: MAIL FROM SIZE= over the limit and data over the limit get 552 5.3.4; nothing is spooled; the session goes on', async () => {
    const r = await relay({ spec: { policy: { maxMessageBytes: 10_240 } } });
    const s = await session(r.smtpPort);
    expect(await s.cmd('MAIL FROM:<a@partner.example.net> SIZE=10241')).toMatch(/^552 5\.3\.4 /);
    expect(await s.cmd('MAIL FROM:<a@partner.example.net> SIZE=1000')).toMatch(/^250/);
    expect(await s.cmd('RCPT TO:<alice@corp.example.com>')).toMatch(/^250/);
    expect(await s.cmd('DATA')).toMatch(/^354/);
    s.write(`Subject: big\r\nMessage-ID: <too-big@partner.example.net>\r\n\r\n${'x'.repeat(76)}\r\n`.repeat(1));
    for (let i = 0; i < 200; i++) s.write(`${'y'.repeat(78)}\r\n`);
    expect(await s.cmd('.')).toMatch(/^552 5\.3\.4 /);
    expect(await s.cmd('MAIL FROM:<a@partner.example.net>')).toMatch(/^250/);
    expect(await s.cmd('RCPT TO:<alice@corp.example.com>')).toMatch(/^250/);
    expect(await s.cmd('DATA')).toMatch(/^354/);
    expect(await s.cmd('Subject: small\r\nMessage-ID: <small-after-big@partner.example.net>\r\n\r\nok\r\n.')).toMatch(/^250 2\.0\.0 Ok: queued as /);
    s.close();
    await postfix.waitFor((m) => m.some((x) => x.messageId === 'small-after-big@partner.example.net'), 30_000, 'small message');
    expect((await postfix.messages()).some((x) => x.messageId === 'too-big@partner.example.net')).toBe(false);
    expect(await r.metrics.registry.metrics()).toMatch(/relay_smtp_rejected_total\{instance="sec-\d+",reason="size"\} 2/);
  }, 60_000);

  it('refuses foreign recipients and routing tricks with 5xx (550 5.7.1 from the relay policy), accepts local ones', async () => {
    const r = await relay();
    const s = await session(r.smtpPort);
    expect(await s.cmd('MAIL FROM:<a@partner.example.net>')).toMatch(/^250/);
    const tricks = [
      'victim@evil.net',
      'alice@corp.example.com.evil.net',
      'alice@evilcorp.example.com',
      'victim%evil.net@corp.example.com',
      'evil.net!victim@corp.example.com',
    ];
    for (const t of tricks) expect(`${t}: ${await s.cmd(`RCPT TO:<${t}>`)}`).toMatch(new RegExp(`^${t.replace(/[.%!]/g, '\\$&')}: 550 5\\.7\\.1 `));
    // smtp-server's own parser already refuses these shapes (501): still permanent, never accepted.
    for (const t of ['@corp.example.com:victim@evil.net', '"victim@evil.net"@corp.example.com', 'alice@[127.0.0.1]']) {
      expect(`${t}: ${await s.cmd(`RCPT TO:<${t}>`)}`).toMatch(/: 5\d\d /);
    }
    expect(await s.cmd('RCPT TO:<Alice@CORP.EXAMPLE.COM>')).toMatch(/^250/);
    expect(await s.cmd('DATA')).toMatch(/^354/);
    expect(await s.cmd('Subject: t\r\nMessage-ID: <tricks@partner.example.net>\r\n\r\nhi\r\n.')).toMatch(/^250 /);
    s.close();
    const got = await postfix.waitFor((m) => m.some((x) => x.messageId === 'tricks@partner.example.net'), 30_000, 'tricks message');
    expect(got.filter((x) => x.messageId === 'tricks@partner.example.net').map((x) => x.recipient)).toEqual(['Alice@corp.example.com']);
  }, 60_000);

  it('refuses a client outside acceptFrom at connect (554 5.7.1)', async () => {
    const r = await relay({ spec: { relay: { acceptFrom: ['10.0.0.0/8', '2001:db8::/32'] } } });
    const s = await RawSmtp.open(r.smtpPort);
    expect(await s.reply()).toMatch(/^554 5\.7\.1 /);
    await s.waitClosed();
  });

  it('caps recipients per message (452 4.5.3) and survives a pipelined burst of 600 RCPTs', async () => {
    const r = await relay({ spec: { policy: { maxRecipients: 3 } } });
    const s = await session(r.smtpPort);
    expect(await s.cmd('MAIL FROM:<a@partner.example.net>')).toMatch(/^250/);
    for (let i = 0; i < 3; i++) expect(await s.cmd(`RCPT TO:<u${i}@corp.example.com>`)).toMatch(/^250/);
    expect(await s.cmd('RCPT TO:<u3@corp.example.com>')).toMatch(/^452 4\.5\.3 /);
    s.write(Array.from({ length: 600 }, (_, i) => `RCPT TO:<p${i}@corp.example.com>\r\n`).join(''));
    for (let i = 0; i < 600; i++) expect(await s.reply()).toMatch(/^452 4\.5\.3 /);
    expect(await s.cmd('RSET')).toMatch(/^250/);
    s.close();
  }, 60_000);

  it('SMTP smuggling: a bare-LF dot does not end DATA; smuggled commands stay text; bare LF is normalised (counted)', async () => {
    const r = await relay();
    const s = await session(r.smtpPort);
    expect(await s.cmd('MAIL FROM:<a@partner.example.net>')).toMatch(/^250/);
    expect(await s.cmd('RCPT TO:<alice@corp.example.com>')).toMatch(/^250/);
    expect(await s.cmd('DATA')).toMatch(/^354/);
    s.write(
      'Subject: smuggle\r\nMessage-ID: <smuggle-outer@partner.example.net>\r\n\r\nbefore\n.\nMAIL FROM:<evil@evil.net>\r\nRCPT TO:<bob@corp.example.com>\r\nDATA\r\n' +
        'Message-ID: <smuggle-inner@partner.example.net>\r\n\r\nsmuggled\r\n\r.\r\nand\r.\r\n',
    );
    expect(await s.cmd('.')).toMatch(/^250 /);
    // Exactly one reply: nothing after the real end of data was taken as a command.
    expect(await s.cmd('NOOP')).toMatch(/^250/);
    s.close();
    const msgs = await postfix.waitFor((m) => m.some((x) => x.messageId === 'smuggle-outer@partner.example.net'), 30_000, 'outer message');
    const outer = msgs.filter((x) => x.messageId === 'smuggle-outer@partner.example.net');
    expect(outer).toHaveLength(1);
    expect(outer[0]!.recipient).toBe('alice@corp.example.com');
    expect(outer[0]!.raw).toContain('smuggled');
    expect(outer[0]!.raw).toContain('MAIL FROM:<evil@evil.net>');
    await waitUntil('spool empty', 20_000, () => r.scheduler.size === 0);
    expect(msgs.some((x) => x.messageId === 'smuggle-inner@partner.example.net')).toBe(false);
    expect(await r.metrics.registry.metrics()).toMatch(/relay_bare_newlines_normalised_total\{instance="sec-\d+"\} 1/);
  }, 60_000);

  it('malformed input (NUL bytes, a 1 MB line, garbage commands, broken MIME) crashes nothing; the relay still serves', async () => {
    // The pregreet test is off by default (acceptFrom networks only); this relay turns it on to check it.
    const r = await relay({ tuning: { maxLineLength: 65_536, greetingDelay: true } });
    // NUL bytes in commands and in data
    const a = await session(r.smtpPort);
    expect(await a.cmd('MAIL FROM:<a\u0000b@partner.example.net>')).toMatch(/^5\d\d/);
    expect(await a.cmd('MAIL FROM:<a@partner.example.net>')).toMatch(/^250/);
    expect(await a.cmd('RCPT TO:<alice@corp.example.com\u0000>')).toMatch(/^5\d\d/);
    expect(await a.cmd('RCPT TO:<alice@corp.example.com>')).toMatch(/^250/);
    expect(await a.cmd('DATA')).toMatch(/^354/);
    expect(await a.cmd('Subject: nul\r\nMessage-ID: <nul@partner.example.net>\r\n\r\na\u0000b\r\n.')).toMatch(/^250/);
    a.close();
    // A 1 MB line without newline: the connection is dropped with 500 5.5.2.
    const b = await session(r.smtpPort);
    b.write('MAIL FROM:<' + 'a'.repeat(1024 * 1024));
    expect(await b.reply(20_000)).toMatch(/^500 5\.5\.2 /);
    await b.waitClosed(20_000);
    // Garbage commands: smtp-server closes after 10 unknown ones (421).
    const c = await session(r.smtpPort);
    c.write(Array.from({ length: 12 }, (_, i) => `XYZZY ${i}\r\n`).join(''));
    const replies: string[] = [];
    for (let i = 0; i < 10; i++) replies.push(await c.reply());
    expect(replies.slice(0, 9).every((x) => /^500/.test(x))).toBe(true);
    expect(replies[9]).toMatch(/^421/);
    c.close();
    // Commands before the greeting (early talker): 421.
    const d = await RawSmtp.open(r.smtpPort);
    d.write('EHLO early\r\n');
    const early = [await d.reply(), await d.reply()].join('\n');
    expect(early).toMatch(/421/);
    d.close();
    // Broken MIME: accepted and delivered as is.
    const broken = await swaks({
      port: r.smtpPort,
      to: 'bob@corp.example.com',
      data: 'Message-ID: <broken-mime@partner.example.net>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="zzz\n\n--zzz\nContent-Type: text/plain; charset="\n\nno closing boundary\n--zz',
    });
    expect(broken.code).toBe(0);
    // Still serving.
    const ok = await swaks({ port: r.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <after-malformed@partner.example.net>'] });
    expect(ok.code).toBe(0);
    await postfix.waitFor(
      (m) => ['nul', 'broken-mime', 'after-malformed'].every((id) => m.some((x) => x.messageId === `${id}@partner.example.net`)),
      30_000,
      'messages after malformed input',
    );
  }, 90_000);

  it('STARTTLS offered with a certificate; requireTLS answers 530 5.7.0 before it; swaks with TLS gets through', async () => {
    const r = await relay({ spec: { relay: { acceptFrom: ['127.0.0.0/8'], requireTLS: true, tlsSecretRef: { name: 'relay-tls' } } }, paths: tlsFiles() });
    const s = await RawSmtp.open(r.smtpPort);
    await s.reply();
    const ehlo = await s.cmd('EHLO client.partner.example.net');
    expect(ehlo).toContain('STARTTLS');
    expect(ehlo).not.toMatch(/AUTH/);
    expect(await s.cmd('MAIL FROM:<a@partner.example.net>')).toMatch(/^530 5\.7\.0 /);
    s.close();
    const tlsOk = await swaks({ port: r.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <tls@partner.example.net>'], extra: ['--tls'] });
    expect(tlsOk.code).toBe(0);
    const msgs = await postfix.waitFor((m) => m.some((x) => x.messageId === 'tls@partner.example.net'), 30_000, 'tls message');
    expect(msgs.find((x) => x.messageId === 'tls@partner.example.net')!.raw).toMatch(/with ESMTPS id/);
  }, 60_000);

  it('STARTTLS sessions end like plain ones: after more TLS sessions in a row from one address than maxClientsPerAddress, the next still gets 220 and 250', async () => {
    const r = await relay({ spec: { relay: { acceptFrom: ['127.0.0.0/8'], tlsSecretRef: { name: 'relay-tls' } } }, paths: tlsFiles(), tuning: { maxClientsPerAddress: 3 } });
    for (let i = 0; i < 6; i++) {
      const t = await swaks({ port: r.smtpPort, to: 'alice@corp.example.com', extra: ['--tls', '--quit-after', 'RCPT'] });
      expect({ session: i, code: t.code }).toEqual({ session: i, code: 0 });
      expect(t.transcript).toMatch(/^<~ +250 /m); // "<~": read over TLS
    }
    const s = await RawSmtp.open(r.smtpPort);
    expect(await s.reply()).toMatch(/^220 /);
    expect(await s.cmd('EHLO client.partner.example.net')).toMatch(/^250/);
    expect(await s.cmd('MAIL FROM:<a@partner.example.net>')).toMatch(/^250/);
    s.close();
  }, 60_000);

  it('backpressure: with the delivery backlog over its bound, MAIL waits backlogWaitMs, then gets 451 4.3.2; a MAIL held while it drains gets 250', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const slow: Transport = {
      destination: 'primary',
      async deliver(_m: SpooledMessage, rcpts: string[]): Promise<RecipientOutcome[]> {
        await gate;
        return rcpts.map((rc) => ({ recipient: rc, status: 'delivered', detail: '250 ok' }));
      },
      async close() {},
    };
    const r = await relay({ tuning: { maxBacklog: 2, backlogWaitMs: 1500 } }, { primary: slow });
    const replies: string[] = [];
    const waited: number[] = [];
    for (let i = 0; i < 5; i++) {
      const s = await session(r.smtpPort);
      const t0 = Date.now();
      replies.push(await s.cmd('MAIL FROM:<a@partner.example.net>'));
      waited.push(Date.now() - t0);
      if (/^250/.test(replies.at(-1)!)) {
        await s.cmd('RCPT TO:<alice@corp.example.com>');
        await s.cmd('DATA');
        expect(await s.cmd(`Subject: bp ${i}\r\n\r\nx\r\n.`)).toMatch(/^250/);
      }
      s.close();
    }
    expect(replies.filter((x) => /^250/.test(x))).toHaveLength(3);
    expect(replies.filter((x) => /^451 4\.3\.2 /.test(x))).toHaveLength(2);
    expect(waited.filter((ms, i) => /^451/.test(replies[i]!) && ms >= 1400)).toHaveLength(2);
    const held = await session(r.smtpPort);
    const t0 = Date.now();
    const heldReply = held.cmd('MAIL FROM:<a@partner.example.net>');
    await new Promise((res) => setTimeout(res, 300));
    release();
    expect(await heldReply).toMatch(/^250/);
    expect(Date.now() - t0).toBeLessThan(1400);
    held.close();
    await waitUntil('backlog drained', 20_000, () => r.scheduler.backlog() === 0 && r.scheduler.size === 0);
    const s = await session(r.smtpPort);
    expect(await s.cmd('MAIL FROM:<a@partner.example.net>')).toMatch(/^250/);
    s.close();
    expect(await spoolFiles(r)).toEqual([]);
  }, 60_000);

  it('a client that disconnects in the middle of DATA leaves no partial file and no hanging write; the relay still serves', async () => {
    const r = await relay();
    const s = await session(r.smtpPort);
    expect(await s.cmd('MAIL FROM:<a@partner.example.net>')).toMatch(/^250/);
    expect(await s.cmd('RCPT TO:<alice@corp.example.com>')).toMatch(/^250/);
    expect(await s.cmd('DATA')).toMatch(/^354/);
    s.write(`Subject: cut\r\nMessage-ID: <cut@partner.example.net>\r\n\r\n${'half a message\r\n'.repeat(2000)}`);
    await waitUntil('partial body being written', 10_000, async () => (await spoolFiles(r)).some((f) => f.endsWith('.msg')));
    s.close();
    await waitUntil('partial body removed', 10_000, async () => (await spoolFiles(r)).length === 0);
    const ok = await swaks({ port: r.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <after-cut@partner.example.net>'] });
    expect(ok.code).toBe(0);
    const t0 = Date.now();
    await r.stop();
    expect(Date.now() - t0).toBeLessThan(10_000); // no DATA write left hanging (close would wait 30 s)
    expect((await postfix.messages()).some((x) => x.messageId === 'cut@partner.example.net')).toBe(false);
  }, 60_000);

  it('idle clients from one address hit the per-address cap (421 4.7.0) and do not starve a client from another address', async () => {
    const r = await relay({ tuning: { maxClientsPerAddress: 20 } });
    const idle: RawSmtp[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const s = await RawSmtp.open(r.smtpPort, 10_000, '127.0.0.1');
        idle.push(s);
        expect(await s.reply()).toMatch(/^220 /);
      }
      const extra = await RawSmtp.open(r.smtpPort, 10_000, '127.0.0.1');
      expect(await extra.reply()).toMatch(/^421 4\.7\.0 /);
      extra.close();
      const other = await swaks({ port: r.smtpPort, to: 'alice@corp.example.com', headers: ['Message-ID: <not-starved@partner.example.net>'], extra: ['--local-interface', '127.0.0.2'] });
      expect(other.code).toBe(0);
      await postfix.waitFor((m) => m.some((x) => x.messageId === 'not-starved@partner.example.net'), 30_000, 'not-starved');
    } finally {
      for (const s of idle) s.close();
    }
  }, 60_000);

  it('stop (SIGTERM): a message in the middle of DATA is still taken (250), idle clients get 421, the listener closes at once', async () => {
    const r = await relay();
    const idle = await session(r.smtpPort);
    const busy = await session(r.smtpPort);
    expect(await busy.cmd('MAIL FROM:<a@partner.example.net>')).toMatch(/^250/);
    expect(await busy.cmd('RCPT TO:<alice@corp.example.com>')).toMatch(/^250/);
    expect(await busy.cmd('DATA')).toMatch(/^354/);
    busy.write('Subject: during stop\r\nMessage-ID: <during-stop@partner.example.net>\r\n\r\nfirst half\r\n');
    await waitUntil('body being written', 10_000, async () => (await spoolFiles(r)).some((f) => f.endsWith('.msg')));
    const t0 = Date.now();
    const stopping = r.stop();
    await waitUntil('listener closed', 10_000, async () => !(await RawSmtp.open(r.smtpPort).then((x) => (x.close(), true), () => false)));
    busy.write('second half\r\n');
    expect(await busy.cmd('.')).toMatch(/^250 2\.0\.0 Ok: queued as /);
    expect(await idle.reply()).toMatch(/^421 4\.3\.2 /);
    await stopping;
    expect(Date.now() - t0).toBeLessThan(10_000);
    // The message is on disk for the next start (deliveries stopped with the relay).
    const states = await readSpoolDir(r.config.paths.spool, 'queue');
    const delivered = (await postfix.messages()).some((x) => x.messageId === 'during-stop@partner.example.net');
    expect(delivered || states.some((x) => x.messageId === 'during-stop@partner.example.net')).toBe(true);
  }, 60_000);

  it('adds a Message-ID when a message has none (also when it has no header section at all)', async () => {
    const r = await relay();
    const ids: string[] = [];
    for (const data of ['Subject: no id\r\n\r\nbody one\r\n.', '\r\nbody two, no headers\r\nSubject: not a header\r\n\r\nx\r\n.']) {
      const s = await session(r.smtpPort);
      await s.cmd('MAIL FROM:<a@partner.example.net>');
      await s.cmd('RCPT TO:<bob@corp.example.com>');
      await s.cmd('DATA');
      const reply = await s.cmd(data);
      expect(reply).toMatch(/^250 2\.0\.0 Ok: queued as ([0-9a-f]+)/);
      ids.push(/queued as ([0-9a-f]+)/.exec(reply)![1]!);
      s.close();
    }
    const msgs = await postfix.waitFor((m) => ids.every((id) => m.some((x) => x.messageId === `${id}@relay.test`)), 30_000, 'messages with added ids');
    const two = msgs.find((x) => x.messageId === `${ids[1]}@relay.test`)!;
    expect(two.raw).toMatch(/\n\nbody two, no headers\nSubject: not a header\n/);
  }, 60_000);
});
