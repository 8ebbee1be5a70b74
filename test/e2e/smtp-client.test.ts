// The relay's SMTP client (transports/smtp/: connection, pool, data writer through createSmtpTransport)
// against real servers: Postfix for byte-exact delivery and per-recipient
// replies, smtp-sink for load, and a small scripted SMTP server (below) for
// what real servers are not easily made to do: record how commands arrive
// (pipelining), count connections, offer STARTTLS with a self-signed
// certificate, AUTH, stall, greet with 421, drop a cached connection.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext, TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { createSmtpTransport, type SmtpTransportOptions } from '../../src/relay/transports/smtp/transport.js';
import type { RecipientOutcome, SpooledMessage, Transport } from '../../src/relay/types.js';
import { freePort, startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { startSmtpSink, type SmtpSink } from '../harness/smtp-tools.js';
import { selfSignedCert } from '../harness/tls.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });

let dir: string;
let tlsKey: Buffer;
let tlsCert: Buffer;
let postfix: PostfixInstance;
let sink: SmtpSink;
const transports: Transport[] = [];
const fakes: FakeSmtp[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smtp-client-'));
  const tls = selfSignedCert(dir, 'fake.test');
  tlsKey = readFileSync(tls.key);
  tlsCert = readFileSync(tls.cert);
  postfix = await startPostfix({
    domains: ['corp.example.com'],
    recipients: ['alice@corp.example.com', 'bob@corp.example.com'],
    rejectRecipients: ['gone@corp.example.com'],
  });
  sink = await startSmtpSink();
}, 60_000);

afterAll(async () => {
  for (const t of transports) await t.close();
  for (const f of fakes) await f.close();
  await sink?.stop();
  await postfix?.destroy();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

function transport(port: number, extra: Partial<SmtpTransportOptions> = {}): Transport {
  const t = createSmtpTransport({ destination: 'primary', host: '127.0.0.1', port, tls: 'None', maxConnections: 5, name: 'relay.test', log, ...extra });
  transports.push(t);
  return t;
}

let seq = 0;
function message(body: Buffer | string, rcptTo: string[] = ['alice@corp.example.com'], extra: Partial<SpooledMessage> = {}): SpooledMessage {
  const b = Buffer.from(body);
  return { id: `m${++seq}`, path: '/nonexistent', body: b, size: b.length, mailFrom: 'sender@partner.example.net', rcptTo, sha256: '', receivedAt: Date.now(), ...extra };
}

const headers = (id: string) =>
  `From: sender@partner.example.net\r\nTo: alice@corp.example.com\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <${id}>\r\nSubject: ${id}\r\n\r\n`;

const statuses = (o: RecipientOutcome[]) => o.map((x) => `${x.recipient}:${x.status}`);

// ------------------------------------------------------------------ a scripted SMTP server

interface FakeOptions {
  greeting?: string;
  /** EHLO keywords besides the ones below (STARTTLS with `tls`, AUTH with `auth`). */
  extensions?: string[];
  tls?: boolean;
  /** TLS from the first byte (port 465 style). */
  implicitTls?: boolean;
  auth?: { user: string; pass: string };
  /** Never answer: the greeting, or DATA. */
  stall?: 'greeting' | 'data';
  rcpt?: (address: string) => string;
  /** After this many messages on a connection, the next bytes from the client close it without a reply. */
  dropAfter?: number;
  /** Write each reply in two packets. */
  split?: boolean;
}

interface FakeMessage {
  from: string;
  mailArgs: string;
  to: string[];
  data: Buffer;
  secure: boolean;
  connection: number;
}

interface FakeSmtp {
  port: number;
  connections: number;
  /** Command-phase chunks as the server read them. */
  reads: string[];
  commands: string[];
  messages: FakeMessage[];
  auths: string[];
  close(): Promise<void>;
}

async function startFake(o: FakeOptions = {}): Promise<FakeSmtp> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((raw) => {
    const connection = ++fake.connections;
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    raw.on('error', () => undefined);
    let sock: Socket = raw;
    let buf = Buffer.alloc(0);
    let inData = false;
    let secure = false;
    let from = '';
    let mailArgs = '';
    let to: string[] = [];
    let delivered = 0;
    const reply = (text: string) => {
      const b = Buffer.from(`${text}\r\n`);
      if (!o.split) return void sock.write(b);
      sock.write(b.subarray(0, 3));
      setTimeout(() => sock.write(b.subarray(3)), 5);
    };
    const onData = (chunk: Buffer) => {
      if (o.dropAfter !== undefined && delivered >= o.dropAfter) return void sock.destroy();
      if (!inData) fake.reads.push(chunk.toString('latin1'));
      buf = Buffer.concat([buf, chunk]);
      sock.cork();
      try {
        work();
      } finally {
        process.nextTick(() => sock.uncork());
      }
    };
    const work = () => {
      for (;;) {
        if (inData) {
          const hay = Buffer.concat([Buffer.from('\r\n'), buf]);
          const end = hay.indexOf('\r\n.\r\n');
          if (end < 0) return;
          const data = Buffer.from(hay.subarray(2, end + 2).toString('latin1').replace(/(^|\r\n)\./g, '$1'), 'latin1');
          buf = hay.subarray(end + 5);
          inData = false;
          fake.messages.push({ from, mailArgs, to, data, secure, connection });
          delivered++;
          reply(`250 2.0.0 Ok: queued as F${fake.messages.length}`);
          continue;
        }
        const nl = buf.indexOf('\r\n');
        if (nl < 0) return;
        const line = buf.subarray(0, nl).toString('utf8');
        buf = buf.subarray(nl + 2);
        fake.commands.push(line);
        const verb = line.split(/[ :]/, 1)[0]!.toUpperCase();
        if (verb === 'EHLO') {
          const ext = [...(o.extensions ?? []), ...(o.tls && !secure ? ['STARTTLS'] : []), ...(o.auth && (secure || !o.tls) ? ['AUTH LOGIN PLAIN'] : [])];
          const lines = ['fake.test', ...ext];
          reply(lines.map((l, i) => `250${i === lines.length - 1 ? ' ' : '-'}${l}`).join('\r\n'));
        } else if (verb === 'HELO' || verb === 'RSET' || verb === 'NOOP') {
          reply('250 2.0.0 Ok');
        } else if (verb === 'STARTTLS' && o.tls) {
          sock.write('220 2.0.0 Ready to start TLS\r\n');
          sock.uncork();
          tlsOn();
          return;
        } else if (verb === 'AUTH') {
          const creds = Buffer.from(line.split(' ')[2] ?? '', 'base64').toString().split('\0');
          const ok = o.auth && creds[1] === o.auth.user && creds[2] === o.auth.pass;
          if (ok) fake.auths.push(creds[1]!);
          reply(ok ? '235 2.7.0 Authentication successful' : '535 5.7.8 Error: authentication failed');
        } else if (verb === 'MAIL') {
          const m = /^MAIL FROM:<([^>]*)>(.*)$/i.exec(line)!;
          from = m[1]!;
          mailArgs = m[2]!.trim();
          to = [];
          reply('250 2.1.0 Ok');
        } else if (verb === 'RCPT') {
          const addr = /<([^>]*)>/.exec(line)![1]!;
          const r = o.rcpt?.(addr) ?? '250 2.1.5 Ok';
          if (r.startsWith('2')) to.push(addr);
          reply(r);
        } else if (verb === 'DATA') {
          if (o.stall === 'data') return;
          if (to.length === 0) reply('554 5.5.1 Error: no valid recipients');
          else {
            inData = true;
            reply('354 End data with <CR><LF>.<CR><LF>');
          }
        } else if (verb === 'QUIT') {
          reply('221 2.0.0 Bye');
          sock.end();
          return;
        } else {
          reply('502 5.5.2 Error: command not recognized');
        }
      }
    };
    const tlsOn = () => {
      raw.off('data', onData);
      sock = new TLSSocket(raw, { isServer: true, secureContext: createSecureContext({ key: tlsKey, cert: tlsCert }) });
      sock.on('data', onData).on('error', () => undefined);
      secure = true;
    };
    raw.on('data', onData);
    if (o.implicitTls) tlsOn();
    if (o.stall === 'greeting') return;
    sock.write(`${o.greeting ?? '220 fake.test ESMTP'}\r\n`);
    if (o.greeting?.startsWith('421')) sock.end();
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const fake: FakeSmtp = {
    port,
    connections: 0,
    reads: [],
    commands: [],
    messages: [],
    auths: [],
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
  fakes.push(fake);
  return fake;
}

// ------------------------------------------------------------------ tests

describe('delivery to Postfix', () => {
  async function stored(messageId: string): Promise<Buffer> {
    const msgs = await postfix.waitFor((m) => m.some((x) => x.messageId === messageId), 30_000, messageId);
    return readFile(msgs.find((x) => x.messageId === messageId)!.file);
  }
  /** Postfix stores LF line ends in the Maildir, after its own Return-Path, Delivered-To and Received headers. */
  const asStored = (sent: Buffer) => Buffer.from(sent.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');

  it('is byte-exact: lines starting with "." and "..", a lone ".", no final CRLF, 8-bit text', async () => {
    const t = transport(postfix.port);
    const cases: Array<[string, Buffer, Buffer]> = [];
    const dots = Buffer.from(`${headers('dots@test')}.leading dot\r\n..two dots\r\n.\r\n...\r\n. \r\nend\r\n`);
    cases.push(['dots@test', dots, dots]);
    const noCrlf = Buffer.from(`${headers('nocrlf@test')}first\r\n.last line without CRLF`);
    cases.push(['nocrlf@test', noCrlf, Buffer.concat([noCrlf, Buffer.from('\r\n')])]);
    const eight = Buffer.from(`${headers('8bit@test').replace('\r\n\r\n', '\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n')}Grüße aus Köln — ✓\r\n.ünïcode after a dot\r\n`);
    cases.push(['8bit@test', eight, eight]);
    for (const [id, body, expected] of cases) {
      const [out] = await t.deliver(message(body), ['alice@corp.example.com']);
      expect(out).toMatchObject({ status: 'delivered', detail: expect.stringMatching(/^250 2\.0\.0 Ok: queued as \w+/) });
      const got = await stored(id);
      const want = asStored(expected);
      expect(got.subarray(got.length - want.length).toString('latin1')).toBe(want.toString('latin1'));
      expect(got.toString('latin1')).toMatch(/^Return-Path: <sender@partner\.example\.net>\n/);
    }
  }, 60_000);

  it('several recipients, one refused by Postfix: per-recipient outcomes', async () => {
    const t = transport(postfix.port);
    const out = await t.deliver(message(headers('multi@test')), ['alice@corp.example.com', 'gone@corp.example.com', 'bob@corp.example.com']);
    expect(statuses(out)).toEqual(['alice@corp.example.com:delivered', 'gone@corp.example.com:failed', 'bob@corp.example.com:delivered']);
    expect(out[1]!.detail).toMatch(/^554 5\.7\.1 <gone@corp\.example\.com>: Recipient address rejected/);
    const msgs = await postfix.waitFor((m) => m.filter((x) => x.messageId === 'multi@test').length === 2, 30_000, 'multi@test twice');
    expect(msgs.filter((x) => x.messageId === 'multi@test').map((x) => x.mailbox).sort()).toEqual(['alice@corp.example.com', 'bob@corp.example.com']);
    // Only refused recipients: every one failed, and the connection is still good for the next message.
    const none = await t.deliver(message(headers('none@test')), ['gone@corp.example.com']);
    expect(statuses(none)).toEqual(['gone@corp.example.com:failed']);
    expect(statuses(await t.deliver(message(headers('after@test')), ['bob@corp.example.com']))).toEqual(['bob@corp.example.com:delivered']);
  }, 60_000);
});

describe('protocol', () => {
  it('pipelines MAIL, RCPT and DATA in one write when PIPELINING is offered; SIZE and BODY=8BITMIME', async () => {
    const fake = await startFake({ extensions: ['PIPELINING', '8BITMIME', 'SIZE 10000000'], rcpt: (a) => (a.startsWith('no') ? '550 5.1.1 <' + a + '>: unknown user' : '250 2.1.5 Ok') });
    const t = transport(fake.port);
    const body = Buffer.from('Subject: x\r\n\r\nnaïve\r\n');
    const out = await t.deliver(message(body), ['a@corp.example.com', 'no@corp.example.com', 'b@corp.example.com']);
    expect(statuses(out)).toEqual(['a@corp.example.com:delivered', 'no@corp.example.com:failed', 'b@corp.example.com:delivered']);
    expect(out[1]!.detail).toBe('550 5.1.1 <no@corp.example.com>: unknown user');
    expect(fake.reads).toContainEqual(
      `MAIL FROM:<sender@partner.example.net> SIZE=${body.length} BODY=8BITMIME\r\nRCPT TO:<a@corp.example.com>\r\nRCPT TO:<no@corp.example.com>\r\nRCPT TO:<b@corp.example.com>\r\nDATA\r\n`,
    );
    expect(fake.messages[0]!.data.equals(body)).toBe(true);
    // No recipient accepted: DATA's 554 is expected, the next transaction starts with RSET in the same write.
    expect(statuses(await t.deliver(message('x\r\n'), ['no1@corp.example.com', 'no2@corp.example.com']))).toEqual(['no1@corp.example.com:failed', 'no2@corp.example.com:failed']);
    expect(statuses(await t.deliver(message('y\r\n'), ['c@corp.example.com']))).toEqual(['c@corp.example.com:delivered']);
    expect(fake.reads.at(-1)).toBe(`RSET\r\nMAIL FROM:<sender@partner.example.net> SIZE=3\r\nRCPT TO:<c@corp.example.com>\r\nDATA\r\n`);
    expect(fake.connections).toBe(1);
  });

  it('sends one command at a time without PIPELINING, and no SIZE or BODY it was not offered', async () => {
    const fake = await startFake({ split: true });
    const t = transport(fake.port);
    const out = await t.deliver(message('Subject: x\r\n\r\nnaïve\r\n'), ['a@corp.example.com', 'b@corp.example.com']);
    expect(statuses(out)).toEqual(['a@corp.example.com:delivered', 'b@corp.example.com:delivered']);
    const commandReads = fake.reads.filter((r) => !r.startsWith('EHLO'));
    expect(commandReads).toEqual(['MAIL FROM:<sender@partner.example.net>\r\n', 'RCPT TO:<a@corp.example.com>\r\n', 'RCPT TO:<b@corp.example.com>\r\n', 'DATA\r\n']);
  });

  it('merges recipients the address map sends to one mailbox into one RCPT', async () => {
    const fake = await startFake({ extensions: ['PIPELINING'] });
    const t = transport(fake.port, { addressMap: [{ from: '@corp.example.com', to: '@corp.example.org' }] });
    const out = await t.deliver(message('x\r\n'), ['alice@corp.example.com', 'alice@corp.example.org']);
    expect(statuses(out)).toEqual(['alice@corp.example.com:delivered', 'alice@corp.example.org:delivered']);
    expect(fake.messages[0]!.to).toEqual(['alice@corp.example.org']);
  });

  it('reuses connections: 60 messages over at most maxConnections connections', async () => {
    const fake = await startFake({ extensions: ['PIPELINING'] });
    const t = transport(fake.port, { maxConnections: 3 });
    const all = await Promise.all(Array.from({ length: 60 }, (_, i) => t.deliver(message(`Subject: ${i}\r\n\r\nbody\r\n`), ['a@corp.example.com'])));
    expect(all.flat().every((o) => o.status === 'delivered')).toBe(true);
    for (let i = 0; i < 5; i++) await t.deliver(message('again\r\n'), ['a@corp.example.com']);
    expect(fake.messages).toHaveLength(65);
    expect(fake.connections).toBeLessThanOrEqual(3);
    expect(fake.commands.filter((c) => c.startsWith('RSET'))).toEqual([]);
  });

  it('retries once on a new connection when a cached one turns out to be closed', async () => {
    const fake = await startFake({ extensions: ['PIPELINING'], dropAfter: 1 });
    const t = transport(fake.port, { maxConnections: 1 });
    expect((await t.deliver(message('one\r\n'), ['a@corp.example.com']))[0]!.status).toBe('delivered');
    expect((await t.deliver(message('two\r\n'), ['a@corp.example.com']))[0]!.status).toBe('delivered');
    expect(fake.connections).toBe(2);
    expect(fake.messages.map((m) => m.data.toString())).toEqual(['one\r\n', 'two\r\n']);
  });

  it('refuses SMTPUTF8 addresses a server does not support, permanently and per recipient', async () => {
    const fake = await startFake({ extensions: ['PIPELINING'] });
    const t = transport(fake.port);
    const out = await t.deliver(message('x\r\n'), ['jörg@corp.example.com', 'a@corp.example.com']);
    expect(statuses(out)).toEqual(['jörg@corp.example.com:failed', 'a@corp.example.com:delivered']);
    expect(out[0]!.detail).toMatch(/^553 5\.6\.7 .*does not support SMTPUTF8/);
    // Domains go lower-cased, an internationalised one as its A-label: no SMTPUTF8 needed.
    expect(statuses(await t.deliver(message('x\r\n'), ['Bob@Bücher.Example']))).toEqual(['Bob@Bücher.Example:delivered']);
    expect(fake.messages.at(-1)!.to).toEqual(['Bob@xn--bcher-kva.example']);
    const utf8 = await startFake({ extensions: ['PIPELINING', 'SMTPUTF8'] });
    const u = transport(utf8.port);
    expect(statuses(await u.deliver(message('x\r\n'), ['jörg@corp.example.com']))).toEqual(['jörg@corp.example.com:delivered']);
    expect(utf8.messages[0]).toMatchObject({ to: ['jörg@corp.example.com'], mailArgs: 'SMTPUTF8' });
  });

  it('streams a body from the spool file: exactly size bytes, dot-stuffed across read chunks', async () => {
    const fake = await startFake({ extensions: ['PIPELINING'] });
    const t = transport(fake.port);
    // 64 KiB read chunks: a CRLF split over the first boundary with a dot after it, a dot right after the second.
    const body = Buffer.alloc(3 * 65536 + 1000, 'x');
    for (let i = 78; i < body.length; i += 80) body.write('\r\n', i);
    body.write('\r\n.', 65535, 'latin1');
    body.write('\r\n', 131070, 'latin1');
    body.write('.', 131072, 'latin1');
    body.write('.', 80, 'latin1');
    const path = join(dir, 'spooled.eml');
    await writeFile(path, Buffer.concat([body, Buffer.from('\r\nBYTES OF THE NEXT MESSAGE\r\n')]));
    const out = await t.deliver(message(body, ['a@corp.example.com'], { body: undefined, path, size: body.length }), ['a@corp.example.com']);
    expect(out[0]!.status).toBe('delivered');
    const got = fake.messages[0]!.data;
    const want = body.subarray(body.length - 2).toString() === '\r\n' ? body : Buffer.concat([body, Buffer.from('\r\n')]);
    expect(got.length).toBe(want.length);
    expect(got.equals(want)).toBe(true);
    // The same bytes from the cached Buffer.
    await t.deliver(message(body), ['a@corp.example.com']);
    expect(fake.messages[1]!.data.equals(want)).toBe(true);
  });
});

describe('failures', () => {
  const noCode = /^(?!\d{3}\b)/;

  it('connection refused: deferred, the detail has no reply code', async () => {
    const t = transport(await freePort());
    const [out] = await t.deliver(message('x\r\n'), ['a@corp.example.com']);
    expect(out).toMatchObject({ status: 'deferred', detail: expect.stringMatching(/^connect ECONNREFUSED 127\.0\.0\.1:\d+/) });
  });

  it('a 421 greeting: deferred with the 421 reply', async () => {
    const fake = await startFake({ greeting: '421 4.3.2 Service shutting down' });
    const out = await transport(fake.port).deliver(message('x\r\n'), ['a@corp.example.com', 'b@corp.example.com']);
    expect(out.map((o) => [o.status, o.detail])).toEqual([
      ['deferred', '421 4.3.2 Service shutting down'],
      ['deferred', '421 4.3.2 Service shutting down'],
    ]);
  });

  it('a server that never greets: deferred after timeoutMs', async () => {
    const fake = await startFake({ stall: 'greeting' });
    const started = Date.now();
    const [out] = await transport(fake.port, { timeoutMs: 500 }).deliver(message('x\r\n'), ['a@corp.example.com']);
    expect(out).toMatchObject({ status: 'deferred', detail: expect.stringMatching(/timed out while receiving the initial server greeting/) });
    expect(out!.detail).toMatch(noCode);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('an endless reply line: deferred, the connection dropped', async () => {
    const fake = await startFake({ greeting: `220 ${'x'.repeat(20_000)}` });
    const [out] = await transport(fake.port).deliver(message('x\r\n'), ['a@corp.example.com']);
    expect(out).toMatchObject({ status: 'deferred', detail: expect.stringMatching(/reply line longer than/) });
  });

  it('abort: an aborted signal, and an abort during a transaction, defer with "aborted"', async () => {
    const fake = await startFake({ stall: 'data' });
    const t = transport(fake.port);
    const ac = new AbortController();
    ac.abort();
    expect((await t.deliver(message('x\r\n'), ['a@corp.example.com'], ac.signal))[0]).toMatchObject({ status: 'deferred', detail: 'aborted' });
    const ac2 = new AbortController();
    setTimeout(() => ac2.abort(), 300);
    const started = Date.now();
    expect((await t.deliver(message('x\r\n'), ['a@corp.example.com'], ac2.signal))[0]).toMatchObject({ status: 'deferred', detail: 'aborted' });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(fake.messages).toHaveLength(0);
  });
});

describe('TLS and AUTH', () => {
  it('STARTTLS required but not offered: deferred; opportunistic: delivered in plaintext', async () => {
    const fake = await startFake({ extensions: ['PIPELINING'] });
    const [out] = await transport(fake.port, { tls: 'STARTTLS' }).deliver(message('x\r\n'), ['a@corp.example.com']);
    expect(out).toMatchObject({ status: 'deferred', detail: expect.stringMatching(/^127\.0\.0\.1:\d+ does not offer STARTTLS/) });
    expect(fake.commands.some((c) => c.startsWith('MAIL'))).toBe(false);
    const [ok] = await transport(fake.port, { tls: 'STARTTLS', opportunisticTLS: true }).deliver(message('x\r\n'), ['a@corp.example.com']);
    expect(ok!.status).toBe('delivered');
    expect(fake.messages[0]!.secure).toBe(false);
  });

  it('STARTTLS with a self-signed certificate: deferred unless insecureSkipTLSVerify; EHLO again after TLS', async () => {
    const fake = await startFake({ extensions: ['PIPELINING'], tls: true });
    const [out] = await transport(fake.port, { tls: 'STARTTLS' }).deliver(message('x\r\n'), ['a@corp.example.com']);
    expect(out).toMatchObject({ status: 'deferred', detail: expect.stringMatching(/certificate/i) });
    expect(out!.detail).toMatch(/^TLS with 127\.0\.0\.1:\d+ failed/);
    expect(fake.messages).toHaveLength(0);
    const [ok] = await transport(fake.port, { tls: 'STARTTLS', insecureSkipTLSVerify: true }).deliver(message('x\r\n'), ['a@corp.example.com']);
    expect(ok!.status).toBe('delivered');
    expect(fake.messages[0]!.secure).toBe(true);
    expect(fake.commands.slice(-6, -2)).toEqual(['EHLO relay.test', 'STARTTLS', 'EHLO relay.test', 'MAIL FROM:<sender@partner.example.net>']);
  });

  it('implicit TLS: verified, and delivered with insecureSkipTLSVerify', async () => {
    const fake = await startFake({ extensions: ['PIPELINING'], implicitTls: true });
    const [out] = await transport(fake.port, { tls: 'Implicit' }).deliver(message('x\r\n'), ['a@corp.example.com']);
    expect(out).toMatchObject({ status: 'deferred', detail: expect.stringMatching(/^TLS with .*certificate/i) });
    const [ok] = await transport(fake.port, { tls: 'Implicit', insecureSkipTLSVerify: true }).deliver(message('x\r\n'), ['a@corp.example.com']);
    expect(ok!.status).toBe('delivered');
    expect(fake.messages[0]!.secure).toBe(true);
  });

  it('AUTH PLAIN over STARTTLS, once per connection; a wrong password defers with the 535', async () => {
    const fake = await startFake({ extensions: ['PIPELINING'], tls: true, auth: { user: 'relay', pass: 's3cret' } });
    const t = transport(fake.port, { tls: 'STARTTLS', insecureSkipTLSVerify: true, auth: { user: 'relay', pass: 's3cret' }, maxConnections: 1 });
    expect((await t.deliver(message('x\r\n'), ['a@corp.example.com']))[0]!.status).toBe('delivered');
    expect((await t.deliver(message('y\r\n'), ['a@corp.example.com']))[0]!.status).toBe('delivered');
    expect(fake.auths).toEqual(['relay']);
    const [bad] = await transport(fake.port, { tls: 'STARTTLS', insecureSkipTLSVerify: true, auth: { user: 'relay', pass: 'wrong' } }).deliver(message('x\r\n'), ['a@corp.example.com']);
    expect(bad).toMatchObject({ status: 'deferred', detail: expect.stringMatching(/^SASL authentication with .* failed: 535 5\.7\.8/) });
  });
});

describe('load', () => {
  it('500 messages over 20 connections to smtp-sink: each delivered once', async () => {
    const t = transport(sink.port, { maxConnections: 20 });
    const filler = `${'0123456789'.repeat(7)}\r\n`.repeat(140);
    const before = await sink.count();
    const all = await Promise.all(Array.from({ length: 500 }, (_, i) => t.deliver(message(`${headers(`load-${i}@test`)}${filler}`), ['a@corp.example.com'])));
    expect(all.flat().filter((o) => o.status !== 'delivered')).toEqual([]);
    await sink.waitForCount(before + 500, 30_000);
    const ids = (await sink.messageIds()).filter((id) => id.startsWith('load-'));
    expect(ids).toHaveLength(500);
    expect(new Set(ids).size).toBe(500);
  }, 60_000);

  it('close() QUITs idle connections and resolves', async () => {
    const fake = await startFake({ extensions: ['PIPELINING'] });
    const t = createSmtpTransport({ destination: 'backup', host: '127.0.0.1', port: fake.port, tls: 'None', maxConnections: 2, name: 'relay.test', log });
    await Promise.all([t.deliver(message('x\r\n'), ['a@corp.example.com']), t.deliver(message('y\r\n'), ['a@corp.example.com'])]);
    await t.close();
    expect(fake.commands.filter((c) => c === 'QUIT')).toHaveLength(fake.connections);
    expect((await t.deliver(message('z\r\n'), ['a@corp.example.com']))[0]).toMatchObject({ status: 'deferred' });
  });
});
