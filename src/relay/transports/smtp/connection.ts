// One SMTP session to the next hop (Postfix's smtp(8) without the cache):
// connect, greeting, EHLO, STARTTLS, AUTH, then mail transactions.
//
// - PIPELINING (RFC 2920) when offered: RSET (only after a failed
//   transaction), MAIL, every RCPT and DATA go out in one write; the replies
//   are read in order (src/lib/smtp-reply.ts). The body is written only after
//   DATA's 354 (data-writer.ts).
// - Per-recipient outcomes: 2xx after the data delivered, 5xx failed, 4xx
//   deferred. A connection-level failure (refused, timeout, TLS, dropped)
//   throws; the pool defers every recipient with a detail that does not start
//   with a reply code, and a 421 with the reply itself: the scheduler tells
//   session failures from a recipient's 4xx by that (isSessionFailure).
// - TLS certificates are verified unless insecureSkipTLSVerify; credentials
//   are sent only over TLS or to a loopback host; a failed AUTH defers
//   (Postfix: smtp_sasl_auth_soft_bounce = yes), the password may be fixed.
import { isAscii } from 'node:buffer';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, TLSSocket } from 'node:tls';
import { replyText, SmtpReplyReader, type SmtpReply } from '../../../lib/smtp-reply.js';
import type { RecipientOutcome } from '../../types.js';
import { trustedCa, untrustedCaHint } from '../../../lib/tls-trust.js';
import { authenticate } from './auth.js';
import { writeData, type MessageSource } from './data-writer.js';
import { is2xx, needsUtf8, outcome, prepareEnvelope } from './envelope.js';
import { SmtpSessionError, type SmtpClientOptions } from './options.js';

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

export class Connection {
  private socket: Socket;
  private readonly reader: SmtpReplyReader;
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
    this.reader = new SmtpReplyReader({
      maxLine: MAX_LINE,
      maxReply: MAX_REPLY,
      onProblem: (p) => {
        const last = p.lines.at(-1) ?? '';
        const e = new SmtpSessionError(
          p.kind === 'line-too-long'
            ? `${this.where} sent a reply line longer than ${MAX_LINE} bytes`
            : `${this.where} sent ${p.kind === 'reply-too-long' ? 'a reply too long' : `a malformed reply: ${JSON.stringify(last.slice(0, 100))}`}`,
        );
        this.fail(e);
        return e;
      },
    });
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
      ...(this.o.ca ? { ca: trustedCa(this.o.ca) } : {}),
    });
  }

  private readonly onData = (chunk: Buffer) => {
    if (this.idle || this.quitting) {
      // A cached connection the server speaks on is being closed (421 timeout): drop it.
      if (this.idle) this.destroy();
      return;
    }
    this.reader.push(chunk);
  };

  private readonly onError = (e: Error) => {
    // Certificate and handshake errors carry no syscall: say they are about TLS.
    const tlsError = this.socket instanceof TLSSocket && !('syscall' in e);
    this.fail(
      tlsError ? new SmtpSessionError(`TLS with ${this.where} failed: ${e.message}${untrustedCaHint(e, !!this.o.ca)}`) : e,
    );
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
    this.reader.fail(e);
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

  /** Resolves on `event` of the socket, rejects when the connection fails first. */
  private until(event: string): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return Promise.race([new Promise<void>((resolve) => this.socket.once(event, () => resolve())), this.dead]);
  }

  /** The next reply; a 421 (the server is closing) ends the session with the reply as the detail. */
  private async reply(phase: string, ms = this.timeoutMs): Promise<SmtpReply> {
    this.phase = phase;
    this.socket.setTimeout(ms);
    const r = await this.reader.next();
    if (r.code === 421) throw new SmtpSessionError(replyText(r));
    this.txnReplies++;
    return r;
  }

  private command(line: string, phase = `after ${line.split(' ', 1)[0]}`): Promise<SmtpReply> {
    this.socket.write(`${line}\r\n`);
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
    if (this.o.auth) await authenticate((line, phase) => this.command(line, phase), this.o.auth, { ext: this.ext, secure: this.secure, host: this.o.host, where: this.where });
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
    if (this.reader.pending()) throw new SmtpSessionError(`${this.where} sent data after its STARTTLS reply`);
    this.detach(this.socket);
    this.socket = this.wrap(this.socket);
    this.attach(this.socket);
    this.phase = 'during the TLS handshake';
    this.socket.setTimeout(this.timeoutMs);
    await this.until('secureConnect');
    this.secure = true;
    await this.hello(); // RFC 3207: forget what was said in plaintext
  }

  /** One mail transaction; per-recipient outcomes in the order of `to`. Throws on connection-level failures. */
  async transaction(sender: string, to: string[], msg: MessageSource): Promise<RecipientOutcome[]> {
    const size = msg.body ? msg.body.length : msg.size;
    const { from, wire, out } = prepareEnvelope(sender, to, size, this.ext, this.where);
    const finish = () => to.map((r) => out.get(r)!);
    const rcpts = to.filter((r) => !out.has(r));
    if (rcpts.length === 0) return finish();
    // Anything the server said between transactions (a 421 before it closes) would shift every reply.
    if (this.reader.pending()) throw new SmtpSessionError(`${this.where} sent an unexpected reply between transactions`);

    let params = this.ext.has('SIZE') ? ` SIZE=${size}` : '';
    // Only a cached body is scanned for 8-bit bytes: a streamed one would be read twice.
    if (msg.body && this.ext.has('8BITMIME') && !isAscii(msg.body)) params += ' BODY=8BITMIME';
    if (this.ext.has('SMTPUTF8') && [from, ...rcpts.map((r) => wire.get(r)!)].some(needsUtf8)) params += ' SMTPUTF8';
    const group = [...(this.dirty ? ['RSET'] : []), `MAIL FROM:<${from}>${params}`, ...rcpts.map((r) => `RCPT TO:<${wire.get(r)!}>`), 'DATA'];
    this.messages++;
    this.txnReplies = 0;
    this.dirty = true;
    const pipelining = this.ext.has('PIPELINING');
    if (pipelining) this.socket.write(group.map((l) => `${l}\r\n`).join(''));
    let next = 0;
    const step = (): Promise<SmtpReply> => {
      const line = group[next++]!;
      if (!pipelining) this.socket.write(`${line}\r\n`);
      return this.reply(`after ${line.split(/[ :]/, 1)[0]}`);
    };
    // The rest of a pipelined group whose transaction already failed: its replies still come.
    const skipRest = async () => {
      while (pipelining && next < group.length) {
        if ((await step()).code === 354) {
          this.socket.write('.\r\n');
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
      else out.set(r, outcome(r, reply, 'recipient'));
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
    this.phase = 'while sending the message body';
    this.socket.setTimeout(DATA_XFER_TIMEOUT_MS);
    await writeData({ socket: this.socket, drained: () => this.until('drain'), failure: () => this.failure }, msg, (d) => new SmtpSessionError(d));
    const done = await this.reply('after END-OF-MESSAGE', DATA_DONE_TIMEOUT_MS);
    if (is2xx(done)) {
      this.dirty = false;
      for (const r of accepted) out.set(r, { recipient: r, status: 'delivered', detail: replyText(done).slice(0, 300) });
    } else {
      for (const r of accepted) out.set(r, outcome(r, done));
    }
    return finish();
  }
}
