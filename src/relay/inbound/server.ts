// SMTP intake (Postfix's smtpd + cleanup): checks the client and every
// recipient, streams DATA into the spool and answers 250 only once the
// message is on stable storage.
//
// Decisions, documented:
// - No AUTH at all (the AUTH command is disabled): the relay takes mail from
//   acceptFrom networks for spec.domains only, like an MX. STARTTLS is offered
//   when a certificate is configured; spec.relay.requireTLS refuses MAIL before it.
// - SMTP smuggling: smtp-server ends DATA only at <CRLF>.<CRLF>, so a bare-LF
//   dot never ends a message. Bare CR and bare LF in the data are NORMALISED to
//   CRLF (Postfix 3.9's smtpd_forbid_bare_newline = normalize): the next hop
//   only ever sees CRLF lines, and broken-but-honest senders are not bounced.
//   A smuggled "\n.\n<commands>" thus stays message text, dot-stuffed on the way out.
// - Early talkers: smtp-server waits 100 ms before the greeting and answers
//   421 to a client that talks first (a cheap pregreet test like postscreen's).
//   Kept by default (tuning.greetingDelay); the MX providers in front of the
//   relay reuse connections, so the pause is paid per connection, not per message.
// - Limits: concurrent clients overall and per client address (421 4.7.0), idle
//   timeout, longest line (tuning.maxLineLength: the connection is dropped with
//   500 5.5.2, both for commands and data), recipients per message (452 4.5.3),
//   SIZE on MAIL FROM and on the data (552 5.3.4).
// - Backpressure: while more than tuning.maxBacklog messages are ready for
//   delivery but not yet delivered, MAIL gets 451 4.3.2; with less free spool
//   space than tuning.spoolMinFreeBytes, 452 4.3.1. A write error (ENOSPC, EIO)
//   during DATA answers 452 4.3.1: never 250 for mail that is not on disk.
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { RelayConfig } from '../../api/relay/config.js';
import type { RelayMetrics } from '../metrics.js';
import { compileCidrs, matchClient } from '../../lib/ip.js';
import { checkRecipient, headerNamesOfInterest } from '../policy/policy.js';
import type { Spool } from '../spool/spool.js';
import { SpoolFullError, type MessageState } from '../spool/state.js';
import type { MessageWriter } from '../spool/writer.js';
import type { SpooledMessage } from '../types.js';

export interface InboundDeps {
  config: RelayConfig;
  spool: Spool;
  /** Intake backpressure and hand-over to delivery. */
  queue: { backlog(): number; add(state: MessageState, opts: { message: SpooledMessage }): void };
  metrics: RelayMetrics;
  log: Logger;
}

export interface Inbound {
  port: number;
  /** Connected SMTP clients. */
  clients(): number;
  /** Stops accepting connections and waits (bounded) for messages being written. */
  close(timeoutMs?: number): Promise<void>;
}

class SmtpError extends Error {
  constructor(readonly responseCode: number, message: string) {
    super(message);
  }
}

const MAX_HEADER_BYTES = 64 * 1024;

/** Rewrites bare CR and bare LF to CRLF across chunk boundaries. */
export class NewlineNormaliser {
  private cr = false;
  bare = 0;

  push(chunk: Buffer): Buffer {
    // Fast path: no CR pending, every LF preceded by CR and every CR followed by LF.
    if (!this.cr && isClean(chunk)) return chunk;
    const out = Buffer.allocUnsafe(chunk.length * 2 + 2);
    let o = 0;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.cr) {
        this.cr = false;
        out[o++] = 13;
        out[o++] = 10;
        if (b === 10) continue;
        this.bare++;
      }
      if (b === 13) this.cr = true;
      else if (b === 10) {
        out[o++] = 13;
        out[o++] = 10;
        this.bare++;
      } else out[o++] = b;
    }
    return out.subarray(0, o);
  }

  end(): Buffer {
    if (!this.cr) return Buffer.alloc(0);
    this.cr = false;
    this.bare++;
    return Buffer.from('\r\n');
  }
}

function isClean(chunk: Buffer): boolean {
  if (chunk.length > 0 && chunk[chunk.length - 1] === 13) return false;
  for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) if (i === 0 || chunk[i - 1] !== 13) return false;
  for (let i = chunk.indexOf(13); i !== -1; i = chunk.indexOf(13, i + 1)) if (chunk[i + 1] !== 10) return false;
  return true;
}

/** Parses a CRLF header block into [lower-case name, unfolded value]. */
export function parseHeaders(block: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const line of block.split('\r\n')) {
    if (line === '') continue;
    if ((line[0] === ' ' || line[0] === '\t') && out.length > 0) {
      out[out.length - 1]![1] += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    out.push([line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()]);
  }
  return out;
}

function argOf(args: unknown, key: string): unknown {
  return args && typeof args === 'object' ? (args as Record<string, unknown>)[key] : undefined;
}

/** Postfix's form: the reverse name, or "unknown" (the relay does no reverse lookups). */
const clientName = (name: string | undefined) => (!name || name.startsWith('[') ? 'unknown' : clean(name));

const clean = (s: string, max = 255) => s.replace(/[^\x21-\x7e]/g, '').slice(0, max) || 'unknown';

function rfc5322Date(d: Date): string {
  return d.toUTCString().replace('GMT', '+0000');
}

export async function startInbound(deps: InboundDeps): Promise<Inbound> {
  const { config, spool, queue, metrics, log } = deps;
  const spec = config.spec;
  const t = config.tuning;
  const instance = config.instance;
  const cidrs = compileCidrs(spec.relay.acceptFrom);
  const domains = new Set(spec.domains.map((d) => d.toLowerCase()));
  const interesting = headerNamesOfInterest(spec.policy.exclude);
  const maxBytes = spec.policy.maxMessageBytes;
  const hostname = config.listen.hostname;
  const tls =
    config.paths.tlsCert && config.paths.tlsKey
      ? { cert: await readFile(config.paths.tlsCert), key: await readFile(config.paths.tlsKey) }
      : undefined;
  if (spec.relay.requireTLS && !tls) throw new Error('spec.relay.requireTLS is set but paths.tlsCert/paths.tlsKey are not: the relay has no certificate to offer');
  const reject = (reason: string) => metrics.rejected.inc({ instance, reason });
  const perAddress = new Map<string, number>();
  /**
   * Connection id -> told when the client goes away (smtp-server leaves an open DATA stream
   * hanging). A plain object, not an AbortController: one per connection, and aborting one
   * builds a DOMException with a stack trace.
   */
  const gone = new Map<string, { left: boolean; onLeave?: () => void }>();
  const inflightData = new Set<Promise<void>>();
  let closing = false;

  const server = new SMTPServer({
    name: hostname,
    banner: 'mail-continuity relay',
    size: maxBytes,
    authOptional: true,
    authMethods: [],
    disabledCommands: tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    hideSTARTTLS: false,
    hidePIPELINING: false,
    hide8BITMIME: false,
    hideSMTPUTF8: false,
    ...(tls ? { key: tls.key, cert: tls.cert } : {}),
    maxClients: t.maxClients,
    socketTimeout: t.socketTimeoutMs,
    closeTimeout: 30_000,
    disableReverseLookup: true,
    logger: false,

    onConnect(session, cb) {
      const addr = session.remoteAddress;
      if (!matchClient(cidrs, addr)) {
        reject('client-denied');
        log.warn({ client: addr }, 'connection refused: client not in spec.relay.acceptFrom');
        return cb(new SmtpError(554, `5.7.1 Client host [${addr}] not allowed to use this relay`));
      }
      if ((perAddress.get(addr) ?? 0) > t.maxClientsPerAddress) {
        reject('too-many-connections');
        return cb(new SmtpError(421, `4.7.0 Too many connections from [${addr}], try again later`));
      }
      cb();
    },

    onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, cb) {
      void (async () => {
        if (spec.relay.requireTLS && !session.secure) {
          reject('tls-required');
          throw new SmtpError(530, '5.7.0 Must issue a STARTTLS command first');
        }
        if (!matchClient(cidrs, session.remoteAddress)) {
          reject('client-denied');
          throw new SmtpError(550, '5.7.1 Client host not allowed to use this relay');
        }
        if (queue.backlog() > t.maxBacklog && !(await backlogBelowLimit(session.id))) {
          reject('backlog');
          throw new SmtpError(451, '4.3.2 System busy: delivery backlog, try again later');
        }
        const declared = Number(argOf(address.args, 'SIZE') ?? 0) || 0;
        if (!(await spool.hasRoom(declared))) {
          reject('spool-full');
          throw new SmtpError(452, '4.3.1 Insufficient system storage');
        }
        // eslint-disable-next-line no-control-regex
        if (/[\s<>\x00-\x1f\x7f]/.test(address.address)) {
          reject('bad-sender');
          throw new SmtpError(553, '5.1.7 Malformed sender address');
        }
      })().then(
        () => cb(),
        (e: unknown) => cb(e as Error),
      );
    },

    onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, cb) {
      if (session.envelope.rcptTo.length >= spec.policy.maxRecipients) {
        reject('too-many-recipients');
        return cb(new SmtpError(452, '4.5.3 Too many recipients'));
      }
      const v = checkRecipient(address.address, domains);
      if (!v.ok) {
        reject('relay-denied');
        log.info({ client: session.remoteAddress, recipient: address.address.slice(0, 320), reason: v.reason }, 'recipient refused');
        return cb(new SmtpError(550, `5.7.1 <${address.address.slice(0, 320)}>: Relay access denied`));
      }
      cb();
    },

    onData(stream: SMTPServerDataStream, session: SMTPServerSession, cb) {
      const p = receive(stream, session).then(
        (reply) => (cb as unknown as (err: Error | null, message: string) => void)(null, reply),
        (e: unknown) => cb(e instanceof SmtpError ? e : new SmtpError(451, '4.3.0 Local error in processing')),
      );
      inflightData.add(p);
      void p.finally(() => inflightData.delete(p));
    },
  });

  /**
   * Holds a MAIL command while deliveries lag (the sender waits, like a slow
   * server, instead of being sent away for its retry interval); false when
   * tuning.backlogWaitMs passed, the client left or the relay is stopping.
   */
  async function backlogBelowLimit(sessionId: string): Promise<boolean> {
    const deadline = Date.now() + t.backlogWaitMs;
    const conn = gone.get(sessionId);
    while (queue.backlog() > t.maxBacklog) {
      if (Date.now() >= deadline || conn?.left || closing) return false;
      await new Promise((r) => setTimeout(r, Math.min(25, Math.max(1, deadline - Date.now()))));
    }
    return true;
  }

  async function drain(stream: SMTPServerDataStream): Promise<void> {
    for await (const _ of stream) {
      // discard
    }
  }

  async function receive(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    // A client that disconnects (or times out) mid-DATA: end the stream, drop the partial file.
    const onGone = () => stream.destroy(new Error('client went away during DATA'));
    const conn = gone.get(session.id);
    if (conn?.left) onGone();
    else if (conn) conn.onLeave = onGone;
    try {
      return await receiveMessage(stream, session);
    } finally {
      if (conn) delete conn.onLeave;
    }
  }

  async function receiveMessage(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    let writer: MessageWriter;
    try {
      writer = await spool.create();
    } catch (e) {
      await drain(stream).catch(() => undefined);
      reject('spool-full');
      log.error({ err: (e as Error).message }, 'cannot create spool file');
      throw new SmtpError(452, '4.3.1 Insufficient system storage');
    }
    const now = new Date();
    const rcpts = session.envelope.rcptTo.map((r) => r.address);
    const proto = session.secure ? 'ESMTPS' : 'ESMTP';
    const received =
      `Received: from ${clean(session.hostNameAppearsAs ?? '')} (${clientName(session.clientHostname)} [${clean(session.remoteAddress)}])\r\n` +
      `\tby ${clean(hostname)} (mail-continuity-relay) with ${session.envelope.mailFrom && argOf(session.envelope.mailFrom.args, 'SMTPUTF8') ? 'UTF8' + proto.slice(1) : proto} id ${writer.id}` +
      (rcpts.length === 1 ? `\r\n\tfor <${rcpts[0]}>` : '') +
      `; ${rfc5322Date(now)}\r\n`;
    await writer.write(Buffer.from(received, 'utf8'));

    try {
      return await receiveData(stream, session, writer);
    } catch (e) {
      await writer.abort();
      throw e;
    }
  }

  async function receiveData(stream: SMTPServerDataStream, session: SMTPServerSession, writer: MessageWriter): Promise<string> {
    const rcpts = session.envelope.rcptTo.map((r) => r.address);
    const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
    const norm = new NewlineNormaliser();
    let inBytes = 0;
    let over = false;
    let header: Buffer[] | null = [];
    let headerBytes = 0;
    let headers: Array<[string, string]> = [];
    let messageId: string | undefined;

    const flushHeader = async (rest: Buffer | null) => {
      const buf = Buffer.concat(header!);
      header = null;
      // A message that starts with an empty line has no header section at all.
      const end = buf.subarray(0, 2).toString() === '\r\n' ? -2 : buf.indexOf('\r\n\r\n');
      const block = end >= 0 ? buf.subarray(0, end + 2).toString('utf8') : end === -2 ? '' : buf.toString('utf8');
      headers = parseHeaders(block);
      const mid = headers.find(([n]) => n === 'message-id')?.[1];
      messageId = mid?.replace(/^\s*<|>\s*$/g, '').slice(0, 998) || undefined;
      if (!messageId) {
        messageId = `${writer.id}@${hostname}`;
        await writer.write(Buffer.from(`Message-ID: <${messageId}>\r\n`));
      }
      await writer.write(buf);
      if (rest) await writer.write(rest);
    };

    for await (const raw of stream as AsyncIterable<Buffer>) {
      inBytes += raw.length;
      if (over || inBytes > maxBytes) {
        over = true;
        continue;
      }
      const chunk = norm.push(raw);
      if (header) {
        header.push(chunk);
        headerBytes += chunk.length;
        const joined: Buffer = header.length > 1 ? Buffer.concat(header) : chunk;
        header = [joined];
        const end = joined.indexOf('\r\n\r\n');
        if (end >= 0 || joined.subarray(0, 2).toString() === '\r\n' || headerBytes > MAX_HEADER_BYTES) {
          await flushHeader(null);
        }
      } else await writer.write(chunk);
    }
    const tail = norm.end();
    if (header) {
      header.push(tail);
      await flushHeader(null);
    } else if (tail.length) await writer.write(tail);

    if (over || stream.sizeExceeded) {
      await writer.abort();
      reject('size');
      throw new SmtpError(552, `5.3.4 Message size exceeds fixed maximum message size (${maxBytes} bytes)`);
    }
    if (norm.bare > 0) metrics.normalisedNewlines.inc({ instance });
    const keep = headers.filter(([n]) => interesting.has(n));
    let state: MessageState;
    let message: SpooledMessage;
    try {
      ({ state, message } = await writer.commit({
        mailFrom,
        rcptTo: rcpts,
        messageId,
        receivedAt: Date.now(),
        client: { address: session.remoteAddress, helo: clean(session.hostNameAppearsAs ?? '') },
        headers: keep,
        deliveries: { primary: { recipients: Object.fromEntries(rcpts.map((r) => [r, { status: 'pending' as const }])), attempts: 0, nextAttemptAt: 0 } },
      }));
    } catch (e) {
      reject('spool-full');
      log.error({ err: (e as Error).message, code: e instanceof SpoolFullError ? e.causeCode : undefined }, 'message not accepted: spool write failed');
      throw new SmtpError(452, '4.3.1 Insufficient system storage');
    }
    // On disk from here on: whatever happens next, the answer is 250 (a restart resumes from the spool).
    metrics.accepted.inc({ instance });
    metrics.commits.inc({ instance });
    log.info({ id: state.id, messageId, from: mailFrom, rcpts: rcpts.length, size: state.size, client: session.remoteAddress, bareNewlines: norm.bare || undefined }, 'queued');
    try {
      queue.add(state, { message });
    } catch (e) {
      log.error({ id: state.id, err: (e as Error).message }, 'could not schedule a spooled message (it stays in the spool until restart)');
    }
    return `2.0.0 Ok: queued as ${state.id}`;
  }

  // Per-connection hooks smtp-server has no options for: the line-length guard
  // (on the parser, so it also sees plaintext after STARTTLS), the SIZE reply
  // with its enhanced status code, the per-address counter, the greeting pause.
  interface Conn {
    id: string;
    remoteAddress: string;
    _socket: NodeJS.EventEmitter;
    _parser: { _write: (chunk: Buffer, enc: string, next: (err?: Error) => void) => void };
    send: (code: number, data?: string | string[], context?: unknown) => void;
    close: () => void;
    init: () => void;
    connectionReady: () => void;
    _setListeners: (cb: () => void) => void;
  }
  const connections = (server as unknown as { connections: Set<Conn> }).connections;
  const origAdd = connections.add.bind(connections);
  connections.add = (c: Conn) => {
    const addr = c.remoteAddress;
    perAddress.set(addr, (perAddress.get(addr) ?? 0) + 1);
    const conn: { left: boolean; onLeave?: () => void } = { left: false };
    gone.set(c.id, conn);
    c._socket.once('close', () => {
      conn.left = true;
      conn.onLeave?.();
      gone.delete(c.id);
      const n = (perAddress.get(addr) ?? 1) - 1;
      if (n <= 0) perAddress.delete(addr);
      else perAddress.set(addr, n);
    });
    const send = c.send.bind(c);
    c.send = (code, data, context) => {
      if (code === 552 && typeof data === 'string' && data.startsWith('Error: message exceeds fixed maximum')) {
        reject('size');
        return send(552, `5.3.4 Message size exceeds fixed maximum message size (${maxBytes} bytes)`, context);
      }
      return send(code, data, context);
    };
    const parser = c._parser;
    const write = parser._write.bind(parser);
    let run = 0;
    let dead = false;
    parser._write = (chunk, enc, next) => {
      if (dead) return next();
      const max = t.maxLineLength;
      let i = chunk.indexOf(10);
      if (i === -1) run += chunk.length;
      else {
        if (run + i > max) run = Infinity;
        let prev = i;
        for (i = chunk.indexOf(10, prev + 1); i !== -1; prev = i, i = chunk.indexOf(10, i + 1)) if (i - prev - 1 > max) run = Infinity;
        if (run !== Infinity) run = chunk.length - prev - 1;
      }
      if (run > t.maxLineLength) {
        dead = true;
        reject('line-too-long');
        log.warn({ client: addr }, 'line too long: connection dropped');
        send(500, '5.5.2 Line too long', false);
        c.close();
        return next();
      }
      return write(chunk, enc, next);
    };
    if (!t.greetingDelay) {
      c.init = () =>
        c._setListeners(() => {
          if (connections.size > t.maxClients) return send(421, `${hostname} Too many connected clients, try again in a moment`, false);
          c.connectionReady();
        });
    }
    return origAdd(c);
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port ?? spec.relay.port, config.listen.host, () => {
      server.off('error', reject);
      server.on('error', (e: Error) => log.error({ err: e.message }, 'smtp server error'));
      resolve();
    });
  });
  const port = ((server as unknown as { server: { address(): AddressInfo } }).server.address()).port;
  log.info({ port, tls: !!tls, requireTLS: spec.relay.requireTLS }, 'smtp listening');

  return {
    port,
    clients: () => connections.size,
    async close(timeoutMs = 30_000) {
      closing = true;
      // Stop listening; from now on smtp-server answers every command with 421.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      const deadline = Date.now() + timeoutMs;
      let timer: NodeJS.Timeout | undefined;
      const until = (p: Promise<unknown>) =>
        Promise.race([p, new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))))]).finally(() => clearTimeout(timer));
      // Messages being received are finished (written, fsync'ed, answered 250) ...
      await until(Promise.all([...inflightData]));
      // ... then idle clients are told to come back instead of holding the shutdown for closeTimeout.
      for (const c of [...connections]) {
        c.send(421, `4.3.2 ${hostname} Service shutting down, try again later`, false);
        c.close();
      }
      await until(closed);
    },
  };
}
