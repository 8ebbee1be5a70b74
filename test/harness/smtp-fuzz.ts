// A grammar-aware SMTP fuzzer for the relay: sessions drawn from a grammar of
// SMTP (commands in and out of order, parameters, addresses with routing tricks
// and odd quoting, pipelined groups, DATA bodies with lone dots, dot-stuffing,
// bare CR/LF, NULs, 8-bit bytes and long lines, junk), from a seeded PRNG so a
// failure can be replayed (the seed is in the result). It checks what a client
// can see: every reply well-formed (three digits 2xx-5xx, continuation lines of
// one code), the server answers or closes within a timeout, and it lists the
// ids of the messages answered "250 ... queued as ID" so the caller can check
// that none was lost.
import { connect as netConnect, type Socket } from 'node:net';
import { SmtpReplyReader, type SmtpReply } from '../../src/lib/smtp-reply.js';

/** mulberry32: small, seeded, good enough to draw from a grammar. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const chance = (r: Rand, p: number) => r() < p;
const repeat = (r: Rand, s: string, max: number) => s.repeat(1 + Math.floor(r() * max));

function localPart(r: Rand): string {
  return pick(r, [
    'alice',
    'bob',
    'Alice.Smith',
    '"quoted user"',
    '"a@b"',
    'x%y',
    'user!host',
    'ünïcode',
    repeat(r, 'l', 300),
    '',
    'a+tag',
    '"\\"esc"',
  ]);
}

function domain(r: Rand): string {
  return pick(r, ['corp.example.com', 'CORP.EXAMPLE.COM', 'example.org', 'corp.example.com.', 'evil.example', '[127.0.0.1]', 'sub.corp.example.com', 'xn--e1afmkfd.example', repeat(r, 'd.', 200) + 'com']);
}

function address(r: Rand): string {
  if (chance(r, 0.05)) return pick(r, ['', '@', '<>', '@a,@b:c@corp.example.com']);
  return `${localPart(r)}@${domain(r)}`;
}

function mailParams(r: Rand): string {
  return chance(r, 0.5) ? '' : ' ' + pick(r, ['SIZE=100', 'SIZE=999999999999', 'BODY=8BITMIME', 'SMTPUTF8', 'SIZE=abc', 'RET=FULL', 'X'.repeat(100), 'SIZE=']);
}

function junkLine(r: Rand): string {
  return pick(r, ['', ' ', 'GET / HTTP/1.1', '\u0000\u0001\u0002', 'MAIL', 'RCPT TO', 'DATA extra', 'AUTH PLAIN AGFsaWNlAHNlY3JldA==', 'STARTTLS', 'VRFY alice', 'EXPN list', 'HELP', 'TURN', 'BDAT 10 LAST', 'xyzzy', 'é'.repeat(50), 'A'.repeat(2000)]);
}

/** A message body: headers and lines that probe the DATA framing (never the final "."). */
function body(r: Rand): string {
  const lines: string[] = [];
  if (chance(r, 0.8)) lines.push(`Subject: fuzz ${Math.floor(r() * 1e9)}`, `Message-ID: <fuzz-${Math.floor(r() * 1e12)}@partner.example.net>`);
  if (chance(r, 0.3)) lines.push(`X-Long: ${'h'.repeat(Math.floor(r() * 5000))}`);
  lines.push('');
  const n = Math.floor(r() * 20);
  for (let i = 0; i < n; i++) {
    lines.push(pick(r, ['text', '..', '.x', '. ', 'a\rb', 'a\nb', '\n.\n', 'From me', '\u00ff\u00fe', 'x'.repeat(Math.floor(r() * 3000)), '\u0000', '.\r', '']));
  }
  return lines.join('\r\n') + '\r\n';
}

/** One command (without its CRLF), drawn from the grammar. */
function command(r: Rand): { line: string; data?: string } {
  const k = r();
  if (k < 0.12) return { line: `${pick(r, ['EHLO', 'HELO', 'ehlo', 'LHLO'])} ${pick(r, ['client.example', '', '[127.0.0.1]', 'x'.repeat(300)])}` };
  if (k < 0.32) return { line: `MAIL FROM:<${address(r)}>${mailParams(r)}` };
  if (k < 0.55) return { line: `RCPT TO:<${address(r)}>${chance(r, 0.1) ? ' NOTIFY=NEVER' : ''}` };
  if (k < 0.72) return { line: 'DATA', data: body(r) };
  if (k < 0.78) return { line: pick(r, ['RSET', 'NOOP', 'noop hello']) };
  if (k < 0.8) return { line: 'QUIT' };
  return { line: junkLine(r) };
}

export interface FuzzResult {
  seed: number;
  sessions: number;
  commands: number;
  replies: number;
  /** Ids of messages answered "250 ... queued as ID". */
  queued: string[];
  /** What a client should never see: malformed replies, no answer in time. */
  violations: string[];
  codes: Record<string, number>;
}

/** Reads replies; a malformed one fails the session (recorded as a violation). */
class Client {
  private readonly reader = new SmtpReplyReader({ encoding: 'latin1', maxLine: 1 << 16, maxReply: 1 << 20 });
  closed = false;
  constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => this.reader.push(c));
    socket.on('close', () => {
      this.closed = true;
      this.reader.fail(new Error('closed'));
    });
    socket.on('error', () => undefined);
  }

  async reply(timeoutMs: number): Promise<SmtpReply | 'closed'> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.reader.next(),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no reply within ${timeoutMs} ms`)), timeoutMs))),
      ]);
    } catch (e) {
      if ((e as Error).message === 'closed') return 'closed';
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }
}

function checkReply(rep: SmtpReply): string | undefined {
  if (rep.code < 200 || rep.code > 599) return `reply code ${rep.code}`;
  const codes = new Set(rep.lines.map((l) => l.slice(0, 3)));
  if (codes.size !== 1) return `reply lines of different codes: ${rep.lines.join(' | ').slice(0, 200)}`;
  return undefined;
}

/** Runs fuzz sessions against 127.0.0.1:`port`, `parallel` at a time, for `seconds`. */
export async function fuzzSmtp(o: { port: number; seconds: number; parallel: number; seed: number; replyTimeoutMs?: number }): Promise<FuzzResult> {
  const res: FuzzResult = { seed: o.seed, sessions: 0, commands: 0, replies: 0, queued: [], violations: [], codes: {} };
  const deadline = Date.now() + o.seconds * 1000;
  const timeout = o.replyTimeoutMs ?? 15_000;
  const note = (rep: SmtpReply) => {
    res.replies++;
    res.codes[rep.code] = (res.codes[rep.code] ?? 0) + 1;
    const bad = checkReply(rep);
    if (bad) res.violations.push(bad);
    const q = /^250 2\.0\.0 Ok: queued as ([0-9a-f]+)/.exec(rep.lines.at(-1) ?? '');
    if (q) res.queued.push(q[1]!);
  };
  const session = async (n: number) => {
    const r = prng(o.seed * 1000 + n);
    const socket = netConnect({ host: '127.0.0.1', port: o.port });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const c = new Client(socket);
    const sent: string[] = [];
    try {
      const greet = await c.reply(timeout);
      if (greet === 'closed') return;
      note(greet);
      // Four sessions in ten start with a valid transaction's prelude, so DATA is reached often.
      if (chance(r, 0.4)) {
        for (const line of ['EHLO client.example', 'MAIL FROM:<sender@partner.example.net>', `RCPT TO:<${pick(r, ['alice@corp.example.com', 'bob@example.org'])}>`]) {
          socket.write(`${line}\r\n`);
          sent.push(JSON.stringify(line));
          res.commands++;
          const rep = await c.reply(timeout);
          if (rep === 'closed') return;
          note(rep);
        }
      }
      const steps = 1 + Math.floor(r() * 25);
      for (let i = 0; i < steps && !c.closed; i++) {
        // Sometimes a pipelined pair (DATA only last, as RFC 2920 asks).
        const group = [command(r)];
        if (!/^data\b/i.test(group[0]!.line) && chance(r, 0.2)) group.push(command(r));
        const text = group.map((g) => `${g.line}${chance(r, 0.03) ? '\n' : '\r\n'}`).join('');
        sent.push(JSON.stringify(text.slice(0, 120)));
        socket.write(text);
        for (const g of group) {
          res.commands++;
          const rep = await c.reply(timeout);
          if (rep === 'closed') return;
          note(rep);
          // 354 to whatever asked for it (smtp-server also takes "DATA extra"): the body follows.
          if (rep.code === 354) {
            socket.write(`${g.data ?? body(r)}.\r\n`);
            const end = await c.reply(timeout);
            if (end === 'closed') return;
            note(end);
          }
        }
      }
      socket.write('QUIT\r\n');
    } catch (e) {
      res.violations.push(`session ${n} (seed ${o.seed}): ${(e as Error).message}; last sent: ${sent.slice(-3).join(' ')}`);
    } finally {
      socket.destroy();
    }
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: o.parallel }, async () => {
      while (Date.now() < deadline) {
        res.sessions++;
        await session(next++);
      }
    }),
  );
  return res;
}
