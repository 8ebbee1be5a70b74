// ───────────────────────────────────────────────────────────────────────────
// PATCHES OF smtp-server's PRIVATE INTERNALS (smtp-server 3.x). Every use of a
// member smtp-server does not document is in this file and nowhere else, and
// test/unit/relay-smtp-server-patches.test.ts checks each one against a real
// SMTPServer: when an upgrade moves one, that test fails, not production.
//
//   server.connections (Set)        connected clients; `add` is hooked to see each new one
//   server.server                   the net.Server, for the port actually bound
//   connection._onClose             the client went away (per-address count, DATA abort), also after
//                                   STARTTLS (which removes every listener of the plain socket)
//   connection.send(code, data, ctx) the SIZE refusal's text, a goodbye at shutdown
//   connection._parser._write       the line-length guard (sees the plaintext, also after STARTTLS)
//                                   and the client's activity (with `send`: the session sweep's idle time)
//   connection.init / _setListeners / connectionReady   the greeting without smtp-server's 100 ms pause
//   connection._parser._feedDataStream / _lastBytes   the last bytes of DATA kept as a copy, not as a view
//                                   that holds the client's whole 64 KiB read (500 stalled sessions: 32 MiB)
//   connection.close()              drop a client
//   server._handleProxy(socket, cb) called with each accepted socket before its SMTP session; cb gets
//                                   the session's id and client address (spec.relay.proxyProtocol)
// ───────────────────────────────────────────────────────────────────────────
import { randomBytes } from 'node:crypto';
import type { AddressInfo, Socket } from 'node:net';
import type { SMTPServer } from 'smtp-server';

/** The members of smtp-server's SMTPConnection these patches use. */
export interface PatchedConnection {
  id: string;
  remoteAddress: string;
  _onClose: (...args: unknown[]) => void;
  _parser: {
    _write: (chunk: Buffer, enc: string, next: (err?: Error) => void) => void;
    _feedDataStream: (chunk: Buffer, done: () => void) => void;
    _lastBytes: Buffer | false;
  };
  send: (code: number, data?: string | string[], context?: unknown) => void;
  close: () => void;
  init: () => void;
  connectionReady: () => void;
  _setListeners: (cb: () => void) => void;
}

const connectionsOf = (server: SMTPServer) => (server as unknown as { connections: Set<PatchedConnection> }).connections;

/** Calls `hook` with every connection as smtp-server creates it (before its greeting). */
export function onNewConnection(server: SMTPServer, hook: (c: PatchedConnection) => void): void {
  const connections = connectionsOf(server);
  const add = connections.add.bind(connections);
  connections.add = (c: PatchedConnection) => {
    hook(c);
    return add(c);
  };
}

/**
 * Calls `hook` once when the client goes away. smtp-server's STARTTLS calls
 * removeAllListeners() on the plain socket, so a listener there would never hear
 * of a TLS session's end: the connection's own close handler is hooked instead
 * (smtp-server calls it from the plain socket's and the TLS socket's 'close').
 */
export function onClose(c: PatchedConnection, hook: () => void): void {
  const close = c._onClose.bind(c);
  let done = false;
  c._onClose = (...args) => {
    if (!done) {
      done = true;
      hook();
    }
    return close(...args);
  };
}

/** smtp-server's own send, before any patch: for replies the patches make themselves. */
export function originalSend(c: PatchedConnection): PatchedConnection['send'] {
  return c.send.bind(c);
}

/**
 * smtp-server refuses an oversized `MAIL FROM SIZE=` with "552 Error: message exceeds fixed
 * maximum message size N"; the relay answers with its enhanced code and text instead.
 */
export function rewriteSizeRefusal(c: PatchedConnection, text: string, onRefused: () => void): void {
  const send = c.send.bind(c);
  c.send = (code, data, context) => {
    if (code === 552 && typeof data === 'string' && data.startsWith('Error: message exceeds fixed maximum')) {
      onRefused();
      return send(552, text, context);
    }
    return send(code, data, context);
  };
}

/**
 * Drops the connection (after `onTooLong`, which answers) once a line, in commands or data,
 * is longer than `max` bytes; nothing more is parsed from it.
 */
export function guardLineLength(c: PatchedConnection, max: number, onTooLong: () => void): void {
  const parser = c._parser;
  const write = parser._write.bind(parser);
  let run = 0;
  let dead = false;
  parser._write = (chunk, enc, next) => {
    if (dead) return next();
    let i = chunk.indexOf(10);
    if (i === -1) run += chunk.length;
    else {
      if (run + i > max) run = Infinity;
      let prev = i;
      for (i = chunk.indexOf(10, prev + 1); i !== -1; prev = i, i = chunk.indexOf(10, i + 1)) if (i - prev - 1 > max) run = Infinity;
      if (run !== Infinity) run = chunk.length - prev - 1;
    }
    if (run > max) {
      dead = true;
      onTooLong();
      c.close();
      return next();
    }
    return write(chunk, enc, next);
  };
}

/**
 * smtp-server keeps the last 4 bytes of each DATA chunk (an end of data may straddle two
 * chunks) as a slice of the chunk: a session stalled in the middle of DATA then holds its
 * whole last socket read (up to 64 KiB) for 4 bytes. They are kept as a copy instead.
 */
export function compactDataTail(c: PatchedConnection): void {
  const parser = c._parser;
  const feed = parser._feedDataStream.bind(parser);
  parser._feedDataStream = (chunk, done) => {
    feed(chunk, done);
    const tail = parser._lastBytes;
    if (tail && tail.buffer.byteLength > 4 * tail.length + 1024) parser._lastBytes = Buffer.from(tail);
  };
}

/**
 * Calls `hook` for every chunk the client sends (commands and data, the plaintext also
 * after STARTTLS) and every reply sent to it.
 */
export function onActivity(c: PatchedConnection, hook: () => void): void {
  const parser = c._parser;
  const write = parser._write.bind(parser);
  parser._write = (chunk, enc, next) => {
    hook();
    return write(chunk, enc, next);
  };
  const send = c.send.bind(c);
  c.send = (code, data, context) => {
    hook();
    return send(code, data, context);
  };
}

/**
 * Greets at once instead of after smtp-server's 100 ms pause (which also answers 421 to a
 * client that talks first); keeps its maxClients check.
 */
export function greetWithoutDelay(server: SMTPServer, c: PatchedConnection, maxClients: number, tooMany: () => void): void {
  const connections = connectionsOf(server);
  c.init = () =>
    c._setListeners(() => {
      if (connections.size > maxClients) return tooMany();
      c.connectionReady();
    });
}

/** Connected clients. */
export function connectedClients(server: SMTPServer): number {
  return connectionsOf(server).size;
}

/** Says `text` with 421 to every connected client and drops it. */
export function sendAllAway(server: SMTPServer, text: string): void {
  for (const c of [...connectionsOf(server)]) {
    c.send(421, text, false);
    c.close();
  }
}

/** The port the server listens on (after listen). */
export function listeningPort(server: SMTPServer): number {
  return ((server as unknown as { server: { address(): AddressInfo } }).server.address()).port;
}

/** What smtp-server's connection takes from its socket's PROXY header: the client's address. */
export interface ProxiedClient {
  remoteAddress?: string;
  remotePort?: number;
}

/**
 * Reads each accepted socket's PROXY header with `handler` instead of smtp-server (whose
 * `useProxy` reads version 1 only and trusts peers by exact address). `handler` answers the
 * client's address (empty: the socket's own), or undefined once it has refused the socket:
 * no session is created for it.
 */
export function takeOverProxyHeader(server: SMTPServer, handler: (socket: Socket) => Promise<ProxiedClient | undefined>): void {
  type Callback = (err: Error | null, options: ProxiedClient & { id: string }) => void;
  (server as unknown as { _handleProxy: (socket: Socket, cb: Callback) => void })._handleProxy = (socket, cb) => {
    void handler(socket).then(
      (client) => {
        if (client && !socket.destroyed) cb(null, { id: BigInt(`0x${randomBytes(10).toString('hex')}`).toString(32).padStart(16, '0'), ...client });
      },
      () => socket.destroy(),
    );
  };
}
