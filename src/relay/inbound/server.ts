// SMTP intake (Postfix's smtpd): wires smtp-server to the access checks
// (access.ts), the cleanup of each message (receive.ts) and the per-connection
// hooks smtp-server has no options for (smtp-server-patches.ts). The answer to
// DATA is 250 only once the message is on stable storage.
//
// Decisions, documented (details in src/relay/README.md, "SMTP decisions"):
// - No AUTH at all (the AUTH command is disabled): the relay takes mail from
//   acceptFrom networks for spec.domains only, like an MX. STARTTLS is offered
//   when a certificate is configured; spec.relay.requireTLS refuses MAIL before it.
// - SMTP smuggling: smtp-server ends DATA only at <CRLF>.<CRLF>, so a bare-LF
//   dot never ends a message; bare CR and bare LF are normalised (newlines.ts).
// - Early talkers: smtp-server's 100 ms pause before the greeting (421 to a
//   client that talks first, a pregreet test like postscreen's) is off by
//   default (tuning.greetingDelay): only acceptFrom networks (the MX provider
//   or edge) may connect, so the spambot test buys nothing there, and it would
//   cap senders that open one connection per message.
// - Limits: concurrent clients overall and per client group (an IPv4 address, an
//   IPv6 /64; decided when the connection opens: clients.ts; 421 4.7.0), idle
//   timeout, total session time and idle clients cut short under stress
//   (session-limits.ts), longest line (tuning.maxLineLength: the connection is dropped with
//   500 5.5.2, both for commands and data), recipients per message (452 4.5.3),
//   SIZE on MAIL FROM and on the data (552 5.3.4).
// - Backpressure: while more than tuning.maxBacklog messages are ready for
//   delivery but not yet delivered, MAIL waits and then gets 451 4.3.2; with less
//   free spool space than tuning.spoolMinFreeBytes, 452 4.3.1. A write error
//   (ENOSPC, EIO) during DATA answers 452 4.3.1: never 250 for mail that is not on disk.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { RelayConfig } from '../../api/relay/config.js';
import type { RelayMetrics } from '../metrics.js';
import { headerNamesOfInterest } from '../policy/exclusions.js';
import type { RecipientList } from '../policy/recipients.js';
import type { Spool } from '../spool/spool.js';
import type { MessageState } from '../spool/state.js';
import type { SpooledMessage } from '../types.js';
import { Access } from './access.js';
import { Clients } from './clients.js';
import { acceptThroughProxies } from './proxy-intake.js';
import { receive } from './receive.js';
import { cutFor, underStress, type SessionLimitOptions } from './session-limits.js';
import { SmtpError } from './smtp-error.js';
import * as patch from './smtp-server-patches.js';

export interface InboundDeps {
  config: RelayConfig;
  spool: Spool;
  /** Intake backpressure and hand-over to delivery. */
  queue: { backlog(): number; add(state: MessageState, opts: { message: SpooledMessage }): void };
  metrics: RelayMetrics;
  log: Logger;
  /** The recipient list of spec.relay.recipients, as it is now (re-read when its ConfigMap changes). */
  recipients?: () => RecipientList | undefined;
}

export interface Inbound {
  port: number;
  /** Connected SMTP clients. */
  clients(): number;
  /**
   * Reads paths.tlsCert and paths.tlsKey again and offers them from the next STARTTLS on
   * (smtp-server's updateSecureContext); throws, keeping the current pair, when they do not
   * make a pair (yet). The serial number of the certificate now offered.
   */
  reloadTls(): Promise<string | undefined>;
  /** Stops accepting connections and waits (bounded) for messages being written. */
  close(timeoutMs?: number): Promise<void>;
}

export async function startInbound(deps: InboundDeps): Promise<Inbound> {
  const { config, spool, queue, metrics, log } = deps;
  const spec = config.spec;
  const t = config.tuning;
  const instance = config.instance;
  const maxBytes = spec.policy.maxMessageBytes;
  const hostname = config.listen.hostname;
  const tls =
    config.paths.tlsCert && config.paths.tlsKey
      ? { cert: await readFile(config.paths.tlsCert), key: await readFile(config.paths.tlsKey) }
      : undefined;
  if (spec.relay.requireTLS && !tls) throw new Error('spec.relay.requireTLS is set but paths.tlsCert/paths.tlsKey are not: the relay has no certificate to offer');
  const reject = (reason: string) => metrics.rejected.inc({ instance, reason });
  const clients = new Clients({ perGroup: t.maxClientsPerAddress, ipv6Prefix: t.ipv6GroupPrefix, evictIdleMs: t.stressIdleMs });
  const limits: SessionLimitOptions = { maxSessionMs: t.maxSessionMs, stressIdleMs: t.stressIdleMs, stressClientsRatio: t.stressClientsRatio, maxClients: t.maxClients };
  /** Drops a connection with a 421 (the session sweep, an idle connection giving way). */
  const drops = new Map<string, (text: string) => void>();
  let closing = false;
  const access = new Access({ config, spool, backlog: () => queue.backlog(), clients, closing: () => closing, reject, log, ...(deps.recipients ? { recipients: deps.recipients } : {}) });
  const cleanup = { spool, queue, clients, hostname, maxBytes, instance, interesting: headerNamesOfInterest(spec.policy.exclude), metrics, reject, log };
  const inflightData = new Set<Promise<void>>();

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
    // smtp-server (3.18.3+) refuses command lines over 16 KiB itself with 421; the relay's own
    // guard (tuning.maxLineLength, 500 5.5.2, commands and data alike) decides instead.
    maxCommandLength: t.maxLineLength,
    closeTimeout: 30_000,
    disableReverseLookup: true,
    logger: false,

    onConnect(session, cb) {
      cb(access.connect(session.remoteAddress, session.id));
    },

    onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, cb) {
      access.mailFrom(address, session).then(
        () => cb(),
        (e: unknown) => cb(e as Error),
      );
    },

    onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, cb) {
      cb(access.rcptTo(address, session));
    },

    onData(stream: SMTPServerDataStream, session: SMTPServerSession, cb) {
      const p = receive(cleanup, stream, session).then(
        (reply) => (cb as unknown as (err: Error | null, message: string) => void)(null, reply),
        (e: unknown) => cb(e instanceof SmtpError ? e : new SmtpError(451, '4.3.0 Local error in processing')),
      );
      inflightData.add(p);
      void p.finally(() => inflightData.delete(p));
    },
  });

  // spec.relay.proxyProtocol: the client's address from the trusted proxies' PROXY headers (proxy-intake.ts).
  if (spec.relay.proxyProtocol) acceptThroughProxies(server, spec.relay.proxyProtocol.trustedProxies, { reject, log });

  // Per-connection hooks smtp-server has no options for: the per-address
  // counter, the SIZE reply with its enhanced status code, the line-length
  // guard, the greeting pause.
  patch.onNewConnection(server, (c) => {
    const addr = c.remoteAddress;
    const admission = clients.opened(c.id, addr);
    patch.onClose(c, () => {
      clients.closed(c.id);
      drops.delete(c.id);
    });
    const send = patch.originalSend(c);
    drops.set(c.id, (text) => {
      send(421, text, false);
      c.close();
    });
    patch.onActivity(c, () => clients.active(c.id));
    patch.compactDataTail(c);
    if (admission.admitted && admission.evict) {
      reject('idle-gave-way');
      log.info({ client: addr }, 'client group full: its idlest connection gives way to a new one');
      drops.get(admission.evict.id)?.('4.4.2 Idle connection closed for a new one from your network');
    }
    patch.rewriteSizeRefusal(c, `5.3.4 Message size exceeds fixed maximum message size (${maxBytes} bytes)`, () => reject('size'));
    patch.guardLineLength(c, t.maxLineLength, () => {
      reject('line-too-long');
      log.warn({ client: addr }, 'line too long: connection dropped');
      send(500, '5.5.2 Line too long', false);
    });
    if (!t.greetingDelay) {
      patch.greetWithoutDelay(server, c, t.maxClients, () => send(421, `${hostname} Too many connected clients, try again in a moment`, false));
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.listen.port ?? spec.relay.port, config.listen.host, () => {
      server.off('error', reject);
      server.on('error', (e: Error) => log.error({ err: e.message }, 'smtp server error'));
      resolve();
    });
  });
  const port = patch.listeningPort(server);

  // The session sweep: total session time, and idle clients cut short under stress.
  const sweep = setInterval(() => {
    const now = Date.now();
    const stress = underStress({ clients: patch.connectedClients(server), memoryFull: spool.receiving.nearlyFull(64 * 1024) }, limits);
    for (const conn of clients.all()) {
      const cut = cutFor(conn, now, stress, limits);
      if (!cut) continue;
      reject(cut.reason);
      log.info({ reason: cut.reason, sessionMs: now - conn.openedAt, idleMs: now - conn.lastActivity }, 'session cut');
      drops.get(conn.id)?.(cut.reply);
    }
  }, Math.min(1000, Math.max(100, Math.floor(t.stressIdleMs / 4))));
  sweep.unref();
  log.info({ port, tls: !!tls, requireTLS: spec.relay.requireTLS }, 'smtp listening');

  return {
    port,
    clients: () => patch.connectedClients(server),
    async reloadTls() {
      if (!tls || !config.paths.tlsCert || !config.paths.tlsKey) return undefined;
      const fresh = { cert: await readFile(config.paths.tlsCert), key: await readFile(config.paths.tlsKey) };
      createSecureContext(fresh); // throws on a key that does not match the certificate
      server.updateSecureContext(fresh);
      const serial = new X509Certificate(fresh.cert).serialNumber;
      log.info({ serial, cert: config.paths.tlsCert }, 'TLS certificate reloaded');
      return serial;
    },
    async close(timeoutMs = 30_000) {
      closing = true;
      clearInterval(sweep);
      // Stop listening; from now on smtp-server answers every command with 421.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      const deadline = Date.now() + timeoutMs;
      let timer: NodeJS.Timeout | undefined;
      const until = (p: Promise<unknown>) =>
        Promise.race([p, new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))))]).finally(() => clearTimeout(timer));
      // Messages being received are finished (written, fsync'ed, answered 250) ...
      await until(Promise.all([...inflightData]));
      // ... then idle clients are told to come back instead of holding the shutdown for closeTimeout.
      patch.sendAllAway(server, `4.3.2 ${hostname} Service shutting down, try again later`);
      await until(closed);
    },
  };
}
