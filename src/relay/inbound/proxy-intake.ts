// spec.relay.proxyProtocol: every connection must come from a trusted proxy
// (trustedProxies) and begin with a PROXY protocol header (v1 or v2,
// proxy-protocol.ts); the client address it carries becomes the session's
// address for everything after it: acceptFrom, the per-address limits, the
// Received header, the queue file's client, the logs. A connection from any
// other address is refused before a byte of it is read (it could carry a
// PROXY header naming any address it likes), and so is a trusted proxy's
// connection whose header is missing, broken or late: 421, then closed.
//
// smtp-server's own PROXY support (its `useProxy` option) reads version 1
// only and trusts peers by exact address, so the relay reads the header
// itself, in smtp-server's place (smtp-server-patches.ts: takeOverProxyHeader).
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { SMTPServer } from 'smtp-server';
import { compileCidrs, matchClient, type CidrMatcher } from '../../lib/ip.js';
import { parseProxyHeader, V2_MAX } from './proxy-protocol.js';
import type { Reject } from './smtp-error.js';
import { takeOverProxyHeader } from './smtp-server-patches.js';

/** A trusted proxy has this long to send the header (HAProxy sends it with the connection). */
export const PROXY_HEADER_TIMEOUT_MS = 10_000;

export type ProxyVerdict =
  | { ok: true; version: 1 | 2; source?: { address: string; port: number } }
  | { ok: false; untrusted: boolean; reason: string };

/**
 * Reads the PROXY header of a connection from a trusted proxy; refuses at once a connection from
 * any other address. The bytes after the header are left in the socket for the SMTP session.
 */
export function readProxyHeader(socket: Socket, trusted: readonly CidrMatcher[], timeoutMs = PROXY_HEADER_TIMEOUT_MS): Promise<ProxyVerdict> {
  const peer = socket.remoteAddress ?? '';
  if (!matchClient(trusted, peer)) {
    return Promise.resolve({ ok: false, untrusted: true, reason: `connection from ${peer}, which is not in spec.relay.proxyProtocol.trustedProxies` });
  }
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const finish = (v: ProxyVerdict) => {
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onGone);
      socket.off('close', onGone);
      socket.off('error', onGone);
      resolve(v);
    };
    const onGone = () => finish({ ok: false, untrusted: false, reason: 'the proxy closed the connection before its PROXY header' });
    const onReadable = () => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        got = Buffer.concat([got, chunk]);
        const h = parseProxyHeader(got);
        if (h.kind === 'incomplete') {
          if (got.length > V2_MAX) return finish({ ok: false, untrusted: false, reason: 'PROXY header too long' });
          continue;
        }
        if (h.kind === 'invalid') return finish({ ok: false, untrusted: false, reason: h.reason });
        if (got.length > h.length) socket.unshift(got.subarray(h.length));
        return finish({ ok: true, version: h.version, ...(h.source ? { source: h.source } : {}) });
      }
    };
    const timer = setTimeout(() => finish({ ok: false, untrusted: false, reason: `no PROXY header within ${timeoutMs} ms` }), timeoutMs);
    timer.unref();
    socket.on('readable', onReadable);
    socket.once('end', onGone);
    socket.once('close', onGone);
    socket.once('error', onGone);
  });
}

/** Answers 421 and closes (the reply gets a moment to leave). */
function refuse(socket: Socket, text: string): void {
  socket.on('error', () => undefined);
  if (socket.writable) socket.end(`421 ${text}\r\n`);
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Makes `server` take its clients' addresses from the PROXY headers of the trusted proxies. */
export function acceptThroughProxies(
  server: SMTPServer,
  trustedProxies: readonly string[],
  d: { reject: Reject; log: Logger; timeoutMs?: number },
): void {
  const trusted = compileCidrs(trustedProxies);
  takeOverProxyHeader(server, async (socket) => {
    const v = await readProxyHeader(socket, trusted, d.timeoutMs);
    if (v.ok) {
      // LOCAL / UNKNOWN: the proxy's own connection (a health check) keeps the proxy's address.
      return v.source ? { remoteAddress: v.source.address, remotePort: v.source.port } : {};
    }
    d.reject(v.untrusted ? 'proxy-untrusted' : 'proxy-header');
    d.log.warn({ peer: socket.remoteAddress, reason: v.reason }, 'connection refused: PROXY protocol');
    refuse(
      socket,
      v.untrusted
        ? '4.7.1 Connections must come through a trusted proxy (PROXY protocol)'
        : `4.7.0 PROXY protocol header required: ${v.reason}`,
    );
    return undefined;
  });
}
