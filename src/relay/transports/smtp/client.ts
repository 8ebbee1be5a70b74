// A lean SMTP client and connection pool for the relay's deliveries (what
// Postfix's smtp(8) does with connection caching), in place of nodemailer:
// the relay only ever sends a finished message from the spool, so there is
// nothing to compose, and the cost that matters is round trips and writes.
//
// Decisions:
// - PIPELINING (RFC 2920) when offered: RSET (only after a failed
//   transaction), MAIL, every RCPT and DATA go out in one write; the replies
//   are read in order. The body is written only after DATA's 354.
// - The body is dot-stuffed with indexOf over "\r\n." and written as slices of
//   the original bytes, corked into one writev; a streamed body (no cached
//   copy) is read from the spool file, bytes [0, size) only.
// - Per-recipient outcomes: 2xx after the data delivered, 5xx failed, 4xx
//   deferred. A connection-level failure (refused, timeout, TLS, dropped)
//   defers every recipient with a detail that does not start with a reply
//   code, and a 421 with the reply itself: the scheduler tells session
//   failures from a recipient's 4xx by that (isSessionFailure).
// - Pool: at most maxConnections connections, idle ones reused last in first
//   out (the warmest), closed after IDLE_MS (smtp_connection_cache_time_limit)
//   or MAX_MESSAGES transactions (smtp_connection_reuse_count_limit-like);
//   callers beyond the limit wait in FIFO order. A connection that failed in
//   any way is destroyed, never reused. A cached connection the server closed
//   while it was idle is retried once on a new connection.
// - TLS certificates are verified unless insecureSkipTLSVerify; credentials
//   are sent only over TLS or to a loopback host; a failed AUTH defers
//   (Postfix: smtp_sasl_auth_soft_bounce = yes), the password may be fixed.
import { isAscii } from 'node:buffer';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, TLSSocket } from 'node:tls';
import { domainToASCII } from 'node:url';
import type { Logger } from 'pino';
import { isLoopbackHost } from '../../../lib/ip.js';
import { messageFileStream } from '../../spool/queue-file.js';
import type { RecipientOutcome, SpooledMessage } from '../../types.js';

export interface SmtpClientOptions {
  host: string;
  port: number;
  tls: 'STARTTLS' | 'Implicit' | 'None';
  /** STARTTLS only when offered. */
  opportunisticTLS?: boolean;
  insecureSkipTLSVerify?: boolean;
  auth?: { user: string; pass: string };
  maxConnections: number;
  /** EHLO name. */
  name: string;
  /** Connect, greeting and each command reply (smtp_connect_timeout, smtp_helo_timeout...); default 30 s. */
  timeoutMs?: number;
  log: Logger;
}

/** The message bytes: `body` when cached, else bytes [0, size) of `path`. */
export type MessageSource = Pick<SpooledMessage, 'body' | 'path' | 'size'>;

/** Transactions per connection before QUIT (nodemailer's maxMessages; Postfix: smtp_connection_reuse_count_limit). */
const MAX_MESSAGES = 1000;
/** An idle cached connection is closed after this (smtp_connection_cache_time_limit is 2 s; Exchange keeps sessions far longer). */
const IDLE_MS = 30_000;
/** Waiting for the reply to the final "." (smtp_data_done_timeout): the server may scan the message first. */
const DATA_DONE_TIMEOUT_MS = 600_000;
/** Socket inactivity while the body is written (smtp_data_xfer_timeout). */
const DATA_XFER_TIMEOUT_MS = 180_000;
/** Reply lines longer than this (RFC 5321 allows 512) or replies larger than this drop the connection. */
const MAX_LINE = 8192;
const MAX_REPLY = 65_536;
/** close(): busy connections get this long to finish before they are destroyed. */
const CLOSE_GRACE_MS = 2000;

const CRLF_DOT = Buffer.from('\r\n.');
const DOT = Buffer.from('.');
const CR = 13;
const LF = 10;

interface Reply {
  code: number;
  lines: string[];
}

/** Multi-line replies joined with spaces, as Postfix logs them ("550-5.1.1 ... 550 5.1.1 ..."). */
const replyText = (r: Reply) => r.lines.join(' ');
const is2xx = (r: Reply) => r.code >= 200 && r.code < 300;

/** A connection-level failure; `permanent` only for a 5xx greeting or HELO (the host refuses us). */
class SmtpSessionError extends Error {
  constructor(
    message: string,
    readonly opts: { permanent?: boolean; timeout?: boolean } = {},
  ) {
    super(message);
  }
}

/** Dot-stuffing state across chunks: how much of a CRLF the bytes so far end with (2: at a line start). */
interface StuffState {
  crlf: 0 | 1 | 2;
}

/**
 * Appends `chunk` to `parts` as slices, with a "." inserted before every "."
 * that starts a line (RFC 5321 4.5.2), also when the CRLF before it ended the
 * previous chunk.
 */
function dotStuff(chunk: Buffer, st: StuffState, parts: Buffer[]): void {
  if (chunk.length === 0) return;
  let from = 0;
  const stuffAt = (i: number) => {
    if (i > from) parts.push(chunk.subarray(from, i));
    parts.push(DOT);
    from = i;
  };
  if (st.crlf === 2 && chunk[0] === DOT[0]) stuffAt(0);
  else if (st.crlf === 1 && chunk[0] === LF && chunk[1] === DOT[0]) stuffAt(1);
  for (let i = chunk.indexOf(CRLF_DOT); i >= 0; i = chunk.indexOf(CRLF_DOT, i + 3)) stuffAt(i + 2);
  if (from < chunk.length) parts.push(from === 0 ? chunk : chunk.subarray(from));
  const n = chunk.length;
  if (n >= 2 && chunk[n - 2] === CR && chunk[n - 1] === LF) st.crlf = 2;
  else if (chunk[n - 1] === CR) st.crlf = 1;
  else st.crlf = n === 1 && chunk[0] === LF && st.crlf === 1 ? 2 : 0;
}

/** The end of the data: the last line gets its CRLF if it had none, then ".". */
const endOfData = (st: StuffState) => Buffer.from(st.crlf === 2 ? '.\r\n' : '\r\n.\r\n');

function outcome(recipient: string, r: Reply): RecipientOutcome {
  const detail = replyText(r).slice(0, 500);
  return r.code >= 500 && r.code < 600 ? { recipient, status: 'failed', detail } : { recipient, status: 'deferred', detail };
}

/** Non-ASCII addresses need SMTPUTF8 (RFC 6531). */
const needsUtf8 = (address: string) => Buffer.byteLength(address) !== address.length;

/**
 * The address as sent: the domain lower-cased, an internationalised one as its
 * A-label (xn--), so only a non-ASCII local part needs SMTPUTF8 (nodemailer
 * did the same).
 */
function wireAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 0) return address;
  const domain = address.slice(at + 1).toLowerCase();
  return `${address.slice(0, at + 1)}${needsUtf8(domain) ? domainToASCII(domain) || domain : domain}`;
}

class Connection {
  private socket: Socket;
  private partial: Buffer = Buffer.alloc(0);
  private lines: string[] = [];
  private replyBytes = 0;
  private replies: Reply[] = [];
  private waiter: { resolve: (r: Reply) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private readonly dead: Promise<never>;
  private kill!: (e: Error) => void;
  private phase = 'while connecting';
  private secure = false;
  private ext = new Map<string, string>();
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;
  private markClosed!: () => void;
  /** Transactions started on this connection. */
  messages = 0;
  /** Replies read in the current transaction: none means a cached connection that was already dead. */
  txnReplies = 0;
  /** The last transaction did not end with a 2xx after the data: RSET first. */
  private dirty = false;
  private idle = false;
  private quitting = false;

  constructor(
    private readonly o: SmtpClientOptions,
    private readonly onClosed: (c: Connection) => void,
  ) {
    this.dead = new Promise<never>((_, reject) => (this.kill = reject));
    this.dead.catch(() => undefined);
    this.closed = new Promise<void>((resolve) => (this.markClosed = resolve));
    const tcp = netConnect({ host: o.host, port: o.port });
    tcp.setNoDelay(true);
    this.socket = o.tls === 'Implicit' ? this.wrap(tcp) : tcp;
    this.attach(this.socket);
  }

  get where(): string {
    return `${this.o.host}:${this.o.port}`;
  }

  private get timeoutMs(): number {
    return this.o.timeoutMs ?? 30_000;
  }

  private wrap(tcp: Socket): TLSSocket {
    tcp.on('error', () => undefined); // reported by the TLS socket as well
    return tlsConnect({
      socket: tcp,
      host: this.o.host,
      // SNI takes host names only (RFC 6066); the certificate is still checked against an IP.
      ...(isIP(this.o.host) ? {} : { servername: this.o.host }),
      rejectUnauthorized: !this.o.insecureSkipTLSVerify,
    });
  }

  private readonly onData = (chunk: Buffer) => {
    if (this.idle || this.quitting) {
      // A cached connection the server speaks on is being closed (421 timeout): drop it.
      if (this.idle) this.destroy();
      return;
    }
    const buf = this.partial.length > 0 ? Buffer.concat([this.partial, chunk]) : chunk;
    let start = 0;
    for (let nl = buf.indexOf(LF); nl >= 0 && !this.failure; nl = buf.indexOf(LF, start)) {
      if (nl - start > MAX_LINE) break;
      this.line(buf.toString('utf8', start, nl > start && buf[nl - 1] === CR ? nl - 1 : nl));
      start = nl + 1;
    }
    this.partial = buf.subarray(start);
    if (this.partial.length > MAX_LINE) this.fail(new SmtpSessionError(`${this.where} sent a reply line longer than ${MAX_LINE} bytes`));
  };

  private line(l: string): void {
    const m = /^(\d{3})([ -]|$)/.exec(l);
    this.replyBytes += l.length;
    if (!m || this.replyBytes > MAX_REPLY) {
      this.fail(new SmtpSessionError(`${this.where} sent ${m ? 'a reply too long' : `a malformed reply: ${JSON.stringify(l.slice(0, 100))}`}`));
      return;
    }
    this.lines.push(l);
    if (m[2] === '-') return;
    const reply = { code: Number(m[1]), lines: this.lines };
    this.lines = [];
    this.replyBytes = 0;
    const w = this.waiter;
    this.waiter = undefined;
    if (w) w.resolve(reply);
    else this.replies.push(reply);
  }

  private readonly onError = (e: Error) => {
    // Certificate and handshake errors carry no syscall: say they are about TLS.
    const tlsError = this.socket instanceof TLSSocket && !('syscall' in e);
    this.fail(tlsError ? new SmtpSessionError(`TLS with ${this.where} failed: ${e.message}`) : e);
  };

  private readonly onClose = () => {
    this.fail(new SmtpSessionError(`connection to ${this.where} closed by the server ${this.phase}`));
    this.onClosed(this);
    this.markClosed();
  };

  private readonly onTimeout = () => {
    if (this.idle) this.quit();
    else this.fail(new SmtpSessionError(`conversation with ${this.where} timed out ${this.phase}`, { timeout: true }));
  };

  private attach(s: Socket): void {
    s.on('data', this.onData).on('error', this.onError).on('close', this.onClose).on('timeout', this.onTimeout);
  }

  private detach(s: Socket): void {
    s.off('data', this.onData).off('error', this.onError).off('close', this.onClose).off('timeout', this.onTimeout);
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    this.kill(e);
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(e);
    this.socket.destroy();
  }

  get usable(): boolean {
    return !this.failure && !this.quitting && this.messages < MAX_MESSAGES;
  }

  destroy(reason: Error = new SmtpSessionError(`connection to ${this.where} dropped`)): void {
    this.fail(reason);
  }

  /** Polite close: QUIT without waiting for its 221, destroyed if the server lingers. */
  quit(): void {
    if (this.failure || this.quitting) return;
    this.quitting = true;
    this.idle = false;
    this.socket.setTimeout(0);
    this.socket.end('QUIT\r\n');
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  park(): void {
    this.idle = true;
    this.phase = 'while idle';
    this.socket.setTimeout(IDLE_MS);
    this.socket.unref();
  }

  unpark(): void {
    this.idle = false;
    this.socket.ref();
  }

  private write(data: string): void {
    this.socket.write(data);
  }

  /** Resolves on `event` of the socket, rejects when the connection fails first. */
  private until(event: string): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return Promise.race([new Promise<void>((resolve) => this.socket.once(event, () => resolve())), this.dead]);
  }

  /** The next reply; a 421 (the server is closing) ends the session with the reply as the detail. */
  private async reply(phase: string, ms = this.timeoutMs): Promise<Reply> {
    this.phase = phase;
    this.socket.setTimeout(ms);
    const queued = this.replies.shift();
    const r =
      queued ??
      (await new Promise<Reply>((resolve, reject) => {
        if (this.failure) reject(this.failure);
        else this.waiter = { resolve, reject };
      }));
    if (r.code === 421) throw new SmtpSessionError(replyText(r));
    this.txnReplies++;
    return r;
  }

  private command(line: string, phase = `after ${line.split(' ', 1)[0]}`): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply(phase);
  }

  /** Connect, greeting, EHLO, STARTTLS, AUTH. Throws SmtpSessionError or a socket error. */
  async open(): Promise<void> {
    this.socket.setTimeout(this.timeoutMs);
    if (this.socket.connecting) await this.until('connect');
    if (this.socket instanceof TLSSocket) {
      await this.until('secureConnect');
      this.secure = true;
    }
    const greeting = await this.reply('while receiving the initial server greeting');
    if (greeting.code !== 220) throw new SmtpSessionError(replyText(greeting), { permanent: greeting.code >= 500 });
    await this.hello();
    if (this.o.tls === 'STARTTLS' && !this.secure) {
      if (this.ext.has('STARTTLS')) await this.startTls();
      else if (!this.o.opportunisticTLS) throw new SmtpSessionError(`${this.where} does not offer STARTTLS`);
    }
    if (this.o.auth) await this.authenticate(this.o.auth);
  }

  private async hello(): Promise<void> {
    let r = await this.command(`EHLO ${this.o.name}`);
    const esmtp = r.code < 500;
    if (!esmtp) r = await this.command(`HELO ${this.o.name}`);
    if (r.code !== 250) throw new SmtpSessionError(replyText(r), { permanent: r.code >= 500 });
    this.ext = new Map();
    if (!esmtp) return;
    for (const l of r.lines.slice(1)) {
      const [keyword = '', ...params] = l.slice(4).trim().split(/\s+/);
      this.ext.set(keyword.toUpperCase(), params.join(' '));
    }
  }

  private async startTls(): Promise<void> {
    const r = await this.command('STARTTLS');
    if (r.code !== 220) {
      if (this.o.opportunisticTLS) return;
      throw new SmtpSessionError(`${this.where} refused STARTTLS: ${replyText(r)}`);
    }
    // Bytes after the 220 were sent before TLS: a command injection attempt (CVE-2011-0411 style).
    if (this.partial.length > 0 || this.replies.length > 0) throw new SmtpSessionError(`${this.where} sent data after its STARTTLS reply`);
    this.detach(this.socket);
    this.socket = this.wrap(this.socket);
    this.attach(this.socket);
    this.phase = 'during the TLS handshake';
    this.socket.setTimeout(this.timeoutMs);
    await this.until('secureConnect');
    this.secure = true;
    await this.hello(); // RFC 3207: forget what was said in plaintext
  }

  private async authenticate(auth: { user: string; pass: string }): Promise<void> {
    if (!this.secure && !isLoopbackHost(this.o.host)) throw new SmtpSessionError(`not sending credentials to ${this.where} without TLS`);
    const mechanisms = (this.ext.get('AUTH') ?? '').toUpperCase().split(' ');
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    let r: Reply;
    if (mechanisms.includes('PLAIN')) {
      r = await this.command(`AUTH PLAIN ${b64(`\0${auth.user}\0${auth.pass}`)}`, 'after AUTH');
    } else if (mechanisms.includes('LOGIN')) {
      r = await this.command('AUTH LOGIN');
      if (r.code === 334) r = await this.command(b64(auth.user), 'after AUTH LOGIN user name');
      if (r.code === 334) r = await this.command(b64(auth.pass), 'after AUTH LOGIN password');
    } else {
      throw new SmtpSessionError(`${this.where} offers no AUTH PLAIN or LOGIN (AUTH ${this.ext.get('AUTH') ?? 'not offered'})`);
    }
    if (r.code !== 235) throw new SmtpSessionError(`SASL authentication with ${this.where} failed: ${replyText(r)}`);
  }

  /** One mail transaction; per-recipient outcomes in the order of `to`. Throws on connection-level failures. */
  async transaction(sender: string, to: string[], msg: MessageSource): Promise<RecipientOutcome[]> {
    const from = wireAddress(sender);
    const out = new Map<string, RecipientOutcome>();
    const finish = () => to.map((r) => out.get(r)!);
    const failAll = (detail: string) => {
      for (const r of to) if (!out.has(r)) out.set(r, { recipient: r, status: 'failed', detail: detail.slice(0, 500) });
      return finish();
    };
    if ([from, ...to].some((a) => /[\r\n]/.test(a))) return failAll('501 5.1.3 bad address syntax (line break)');
    const size = msg.body ? msg.body.length : msg.size;
    const limit = Number(this.ext.get('SIZE'));
    if (limit > 0 && size > limit) return failAll(`552 5.3.4 message size ${size} exceeds the size limit ${limit} of ${this.where}`);
    const utf8 = this.ext.has('SMTPUTF8');
    if (!utf8 && needsUtf8(from)) return failAll(`553 5.6.7 ${this.where} does not support SMTPUTF8, needed for the sender ${from}`);
    const wire = new Map(to.map((r) => [r, wireAddress(r)]));
    for (const r of to) {
      if (!utf8 && needsUtf8(wire.get(r)!)) out.set(r, { recipient: r, status: 'failed', detail: `553 5.6.7 ${this.where} does not support SMTPUTF8, needed for this recipient` });
    }
    const rcpts = to.filter((r) => !out.has(r));
    if (rcpts.length === 0) return finish();
    // Anything the server said between transactions (a 421 before it closes) would shift every reply.
    if (this.replies.length > 0 || this.partial.length > 0) throw new SmtpSessionError(`${this.where} sent an unexpected reply between transactions`);

    let params = this.ext.has('SIZE') ? ` SIZE=${size}` : '';
    // Only a cached body is scanned for 8-bit bytes: a streamed one would be read twice.
    if (msg.body && this.ext.has('8BITMIME') && !isAscii(msg.body)) params += ' BODY=8BITMIME';
    if (utf8 && [from, ...rcpts.map((r) => wire.get(r)!)].some(needsUtf8)) params += ' SMTPUTF8';
    const group = [...(this.dirty ? ['RSET'] : []), `MAIL FROM:<${from}>${params}`, ...rcpts.map((r) => `RCPT TO:<${wire.get(r)!}>`), 'DATA'];
    this.messages++;
    this.txnReplies = 0;
    this.dirty = true;
    const pipelining = this.ext.has('PIPELINING');
    if (pipelining) this.write(group.map((l) => `${l}\r\n`).join(''));
    let next = 0;
    const step = (): Promise<Reply> => {
      const line = group[next++]!;
      if (!pipelining) this.write(`${line}\r\n`);
      return this.reply(`after ${line.split(/[ :]/, 1)[0]}`);
    };
    // The rest of a pipelined group whose transaction already failed: its replies still come.
    const skipRest = async () => {
      while (pipelining && next < group.length) {
        if ((await step()).code === 354) {
          this.write('.\r\n');
          await this.reply('after END-OF-MESSAGE');
        }
      }
    };

    if (group[0] === 'RSET') {
      const r = await step();
      if (r.code !== 250) throw new SmtpSessionError(`${this.where} refused RSET: ${replyText(r)}`);
    }
    const mail = await step();
    if (!is2xx(mail)) {
      await skipRest();
      for (const r of rcpts) out.set(r, outcome(r, mail));
      return finish();
    }
    const accepted: string[] = [];
    for (const r of rcpts) {
      const reply = await step();
      if (is2xx(reply)) accepted.push(r);
      else out.set(r, outcome(r, reply));
    }
    if (accepted.length === 0) {
      await skipRest();
      return finish();
    }
    const data = await step();
    if (data.code !== 354) {
      for (const r of accepted) out.set(r, is2xx(data) ? { recipient: r, status: 'deferred', detail: replyText(data).slice(0, 500) } : outcome(r, data));
      return finish();
    }
    await this.sendBody(msg);
    const done = await this.reply('after END-OF-MESSAGE', DATA_DONE_TIMEOUT_MS);
    if (is2xx(done)) {
      this.dirty = false;
      for (const r of accepted) out.set(r, { recipient: r, status: 'delivered', detail: replyText(done).slice(0, 300) });
    } else {
      for (const r of accepted) out.set(r, outcome(r, done));
    }
    return finish();
  }

  private async sendBody(msg: MessageSource): Promise<void> {
    this.phase = 'while sending the message body';
    this.socket.setTimeout(DATA_XFER_TIMEOUT_MS);
    const st: StuffState = { crlf: 2 };
    const parts: Buffer[] = [];
    if (msg.body) {
      dotStuff(msg.body, st, parts);
      parts.push(endOfData(st));
      this.writeParts(parts);
      return;
    }
    if (msg.size > 0) {
      const stream = messageFileStream(msg);
      try {
        let read = 0;
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          if (this.failure) throw this.failure;
          read += chunk.length;
          dotStuff(chunk, st, parts);
          if (!this.writeParts(parts.splice(0))) await this.until('drain');
        }
        // Ending the data now would deliver a truncated message.
        if (read !== msg.size) throw new SmtpSessionError(`${msg.path} holds ${read} bytes, not ${msg.size}`);
      } finally {
        stream.destroy();
      }
    }
    this.writeParts([endOfData(st)]);
  }

  /** One writev for all parts; false when the socket buffer is full. */
  private writeParts(parts: Buffer[]): boolean {
    this.socket.cork();
    let ok = true;
    for (const p of parts) ok = this.socket.write(p);
    this.socket.uncork();
    return ok;
  }
}

/** A pool of SMTP connections to one host. */
export class SmtpPool {
  /** Idle connections, the most recently used last. */
  private readonly idle: Connection[] = [];
  private readonly all = new Set<Connection>();
  /** Callers holding a connection slot (with or without a connection yet). */
  private leases = 0;
  private readonly waiters: Array<{ resolve: (c: Connection | undefined) => void; reject: (e: Error) => void }> = [];
  private closing = false;
  private readonly aborts = new WeakMap<AbortSignal, Set<() => void>>();

  constructor(private readonly o: SmtpClientOptions) {}

  /**
   * Sends one message to `to` (distinct envelope recipients). Never throws:
   * every failure is an outcome.
   */
  async send(from: string, to: string[], msg: MessageSource, signal?: AbortSignal): Promise<RecipientOutcome[]> {
    const deferAll = (detail: string): RecipientOutcome[] => to.map((recipient) => ({ recipient, status: 'deferred', detail: detail.slice(0, 500) }));
    if (this.closing) return deferAll('SMTP transport closed');
    if (signal?.aborted) return deferAll('aborted');
    let conn: Connection | undefined;
    try {
      conn = await this.lease(signal);
    } catch (e) {
      return deferAll((e as Error).message);
    }
    const started = Date.now();
    let current: Connection | undefined;
    const stopWatching = signal ? this.watch(signal, () => current?.destroy(new Error('aborted'))) : undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        const reused = conn !== undefined;
        current = conn ?? this.connection();
        conn = undefined;
        try {
          if (!reused) await current.open();
          const outcomes = await current.transaction(from, to, msg);
          conn = current;
          this.o.log.debug({ to: to.length, outcomes: outcomes.map((o) => o.status), ms: Date.now() - started, reused }, 'SMTP transaction');
          return outcomes;
        } catch (e) {
          const err = e as Error;
          current.destroy();
          if (signal?.aborted) return deferAll('aborted');
          const timeout = err instanceof SmtpSessionError && err.opts.timeout;
          // A cached connection the server had closed: nothing was said, try a new one.
          if (reused && attempt === 0 && !timeout && current.txnReplies === 0) {
            this.o.log.debug({ err: err.message }, 'cached SMTP connection was dead, retrying on a new one');
            continue;
          }
          this.o.log.warn({ host: this.o.host, port: this.o.port, err: err.message }, 'SMTP session failed');
          if (err instanceof SmtpSessionError && err.opts.permanent) return to.map((recipient) => ({ recipient, status: 'failed', detail: err.message.slice(0, 500) }));
          return deferAll(err.message);
        }
      }
    } finally {
      stopWatching?.();
      this.release(conn);
    }
  }

  /**
   * Runs `f` when `signal` aborts; returns the unsubscribe. One listener per
   * signal: the scheduler passes the same one to every delivery in flight.
   */
  private watch(signal: AbortSignal, f: () => void): () => void {
    const set = this.aborts.get(signal) ?? new Set<() => void>();
    if (!this.aborts.has(signal)) {
      this.aborts.set(signal, set);
      signal.addEventListener('abort', () => set.forEach((g) => g()), { once: true });
    }
    set.add(f);
    return () => set.delete(f);
  }

  private connection(): Connection {
    const c = new Connection(this.o, (closed) => {
      this.all.delete(closed);
      const i = this.idle.indexOf(closed);
      if (i >= 0) this.idle.splice(i, 1);
    });
    this.all.add(c);
    return c;
  }

  /** A slot, with a cached connection when one is idle. Waiters are served in FIFO order. */
  private lease(signal?: AbortSignal): Promise<Connection | undefined> {
    let idle = this.idle.pop();
    // One that failed a moment ago (its close event is still to come) is skipped.
    while (idle && !idle.usable) idle = this.idle.pop();
    if (idle) {
      idle.unpark();
      this.leases++;
      return Promise.resolve(idle);
    }
    // Waiters exist only while no connection is idle: a released one goes to them first.
    if (this.leases < this.o.maxConnections) {
      this.leases++;
      return Promise.resolve(undefined);
    }
    return new Promise((resolve, reject) => {
      const stopWatching = signal
        ? this.watch(signal, () => {
            this.waiters.splice(this.waiters.indexOf(waiter), 1);
            reject(new Error('aborted'));
          })
        : undefined;
      const waiter = {
        resolve: (c: Connection | undefined) => {
          stopWatching?.();
          resolve(c);
        },
        reject: (e: Error) => {
          stopWatching?.();
          reject(e);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Hands the slot (and the connection, if still good) to the next waiter, or parks the connection. */
  private release(conn: Connection | undefined): void {
    const good = conn?.usable && !this.closing ? conn : undefined;
    if (conn && !good) conn.quit();
    const w = this.waiters.shift();
    if (w) return w.resolve(good);
    this.leases--;
    if (good) {
      good.park();
      this.idle.push(good);
    }
  }

  /** QUIT the idle connections, give busy ones CLOSE_GRACE_MS, then destroy what is left. */
  async close(): Promise<void> {
    this.closing = true;
    for (const w of this.waiters.splice(0)) w.reject(new Error('SMTP transport closed'));
    for (const c of this.idle.splice(0)) c.quit();
    const closed = Promise.all([...this.all].map((c) => c.closed));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise((r) => (timer = setTimeout(r, CLOSE_GRACE_MS)))]);
    clearTimeout(timer);
    for (const c of this.all) c.destroy(new SmtpSessionError('SMTP transport closed'));
    await closed;
  }
}
