// Health probes of the primary (Exchange): an SMTP probe (banner, EHLO,
// STARTTLS handshake when the relay would use it, EHLO again, QUIT) and an
// optional HTTP(S) GET of a health page such as /owa/healthcheck.htm.
//
// A probe never throws: it resolves to a ProbeResult whose failure carries a
// CamelCase reason (for the PrimaryHealthy condition) and a short sentence
// that names host:port and what was seen. Each probe is bounded as a whole by
// timeoutMs and always closes its sockets. latencyMs is the time until the
// verdict (for SMTP: the end of the last EHLO; the QUIT exchange is courtesy
// and does not count).
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { MailContinuitySpec } from '../../api/v1alpha1/mailcontinuity.js';

export type PrimarySpec = MailContinuitySpec['primary'];
export type TlsMode = PrimarySpec['tls'];

export type ProbeFailureReason =
  | 'ConnectionRefused'
  | 'Timeout'
  | 'TLSError'
  | 'BadBanner'
  | 'SMTPError'
  | 'DNSError'
  | 'ConnectionReset'
  | 'HTTPStatus';

export type ProbeResult =
  | { ok: true; latencyMs: number }
  | {
      ok: false;
      latencyMs: number;
      reason: ProbeFailureReason;
      message: string;
      /** Which probe failed. */
      probe?: 'smtp' | 'https';
      /** The HTTP status seen (reason HTTPStatus). */
      status?: number;
    };

export interface SmtpProbeOptions {
  host: string;
  port: number;
  tls: TlsMode;
  insecureSkipTLSVerify?: boolean;
  timeoutMs: number;
  /** Name sent with EHLO (default: this host's name). */
  heloName?: string;
}

export interface HttpsProbeOptions {
  url: string;
  expectedStatus?: number;
  insecureSkipTLSVerify?: boolean;
  timeoutMs: number;
}

/** Replies longer than this (all lines together) count as a protocol error. */
const MAX_REPLY_BYTES = 64 * 1024;

class ProbeFailure extends Error {
  constructor(
    readonly reason: ProbeFailureReason,
    message: string,
  ) {
    super(message);
  }
}

/** What a peer said, made printable and short enough for a condition message. */
export function quoteSeen(text: string, max = 200): string {
  const printable = [...text.replace(/\r?\n/g, ' / ')].map((c) => (c < ' ' || c === '\x7f' ? '?' : c)).join('');
  const clean = printable.trim();
  return JSON.stringify(clean.length > max ? `${clean.slice(0, max)}…` : clean);
}

const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EAI_NODATA']);
const REFUSED_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);
const CERT_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'HOSTNAME_MISMATCH',
  'EPROTO',
]);

function isTlsError(err: NodeJS.ErrnoException & { library?: string }): boolean {
  const code = err.code ?? '';
  return (
    code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || CERT_CODES.has(code) || err.library !== undefined
  );
}

/** Classifies a socket error; `tlsStage` says a TLS handshake was in progress. */
function classify(err: unknown, target: string, host: string, tlsStage: boolean, timeoutMs: number): ProbeFailure {
  if (err instanceof ProbeFailure) return err;
  const e = err as NodeJS.ErrnoException & { library?: string };
  const code = e.code ?? '';
  if (DNS_CODES.has(code)) return new ProbeFailure('DNSError', `cannot resolve ${host} (${code})`);
  if (code === 'ECONNREFUSED') return new ProbeFailure('ConnectionRefused', `${target} refused the connection`);
  if (REFUSED_CODES.has(code)) return new ProbeFailure('ConnectionRefused', `${target} is unreachable (${code})`);
  if (code === 'ETIMEDOUT')
    return new ProbeFailure('Timeout', `${target} did not answer within ${timeoutMs} ms (${code})`);
  if (tlsStage || isTlsError(e)) {
    return new ProbeFailure('TLSError', `TLS handshake with ${target} failed: ${e.message}${code ? ` (${code})` : ''}`);
  }
  return new ProbeFailure(
    'ConnectionReset',
    `${target} dropped the connection: ${e.message}${code ? ` (${code})` : ''}`,
  );
}

interface Reply {
  code: number;
  lines: string[];
  text: string;
}

/** Reads SMTP replies from a socket that may be swapped for its TLS wrapper. */
class ReplyReader {
  private buf = '';
  private replyLines: string[] = [];
  private replies: Reply[] = [];
  private failure: ProbeFailure | undefined;
  private waiter: { resolve: (r: Reply) => void; reject: (e: ProbeFailure) => void } | undefined;
  private detachCurrent: (() => void) | undefined;
  /** What a close of the connection means at this point. */
  closeMeaning: () => ProbeFailure;
  /** What a socket error means at this point. */
  errorMeaning: (err: unknown) => ProbeFailure;

  constructor(closeMeaning: () => ProbeFailure, errorMeaning: (err: unknown) => ProbeFailure) {
    this.closeMeaning = closeMeaning;
    this.errorMeaning = errorMeaning;
  }

  attach(sock: Socket): void {
    this.detachCurrent?.();
    const onData = (chunk: Buffer) => this.push(chunk.toString('latin1'));
    const onError = (err: Error) => this.fail(this.errorMeaning(err));
    const onClose = () => this.fail(this.closeMeaning());
    sock.on('data', onData);
    sock.on('error', onError);
    sock.on('close', onClose);
    this.detachCurrent = () => {
      sock.off('data', onData);
      sock.off('error', onError);
      sock.off('close', onClose);
    };
  }

  detach(): void {
    this.detachCurrent?.();
    this.detachCurrent = undefined;
  }

  /** Bytes received but not yet consumed as a reply (must be none before a TLS upgrade). */
  pending(): boolean {
    return this.buf.length > 0 || this.replyLines.length > 0 || this.replies.length > 0;
  }

  fail(f: ProbeFailure): void {
    if (this.failure) return;
    this.failure = f;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(f);
  }

  private push(text: string): void {
    this.buf += text;
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl < 0) break;
      const line = this.buf.slice(0, nl).replace(/\r$/, '');
      this.buf = this.buf.slice(nl + 1);
      const m = /^(\d{3})([ -]|$)/.exec(line);
      if (!m) {
        this.replyLines.push(line);
        this.complete(0);
        continue;
      }
      this.replyLines.push(line);
      if (m[2] !== '-') this.complete(Number(m[1]));
    }
    if (this.buf.length + this.replyLines.reduce((n, l) => n + l.length, 0) > MAX_REPLY_BYTES) {
      this.replyLines.push(this.buf.slice(0, 200));
      this.buf = '';
      this.complete(0);
    }
  }

  /** code 0: not an SMTP reply. */
  private complete(code: number): void {
    const lines = this.replyLines;
    this.replyLines = [];
    this.replies.push({ code, lines, text: lines.join('\n') });
    this.deliver();
  }

  private deliver(): void {
    if (!this.waiter || this.replies.length === 0) return;
    const w = this.waiter;
    this.waiter = undefined;
    w.resolve(this.replies.shift()!);
  }

  read(): Promise<Reply> {
    if (this.replies.length > 0) return Promise.resolve(this.replies.shift()!);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }
}

function elapsed(start: bigint): number {
  return Math.round(Number(process.hrtime.bigint() - start) / 1e6);
}

function hostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Probes an SMTP server: connect (TLS from the first byte when tls is
 * Implicit), 220 banner, EHLO, and with tls STARTTLS: STARTTLS offered and
 * accepted, the handshake (certificate verified unless insecureSkipTLSVerify),
 * EHLO again; then QUIT.
 */
export async function probeSmtp(o: SmtpProbeOptions): Promise<ProbeResult> {
  const start = process.hrtime.bigint();
  const target = hostPort(o.host, o.port);
  const helo = o.heloName ?? (hostname() || 'localhost');
  const servername = isIP(o.host) ? undefined : o.host;
  let stage = 'the connection';
  let inTls = false;
  const sockets: Socket[] = [];
  let timer: NodeJS.Timeout | undefined;

  const reader = new ReplyReader(
    () =>
      inTls
        ? new ProbeFailure('TLSError', `${target} closed the connection during the TLS handshake`)
        : new ProbeFailure('ConnectionReset', `${target} closed the connection while the probe waited for ${stage}`),
    (err) => classify(err, target, o.host, inTls, o.timeoutMs),
  );

  const expect = async (what: string, ok: (r: Reply) => boolean, fail: (r: Reply) => ProbeFailure): Promise<Reply> => {
    stage = what;
    const r = await reader.read();
    if (!ok(r)) throw fail(r);
    return r;
  };
  const send = (line: string) => {
    sockets[sockets.length - 1]!.write(`${line}\r\n`);
  };
  const handshake = (sock: TLSSocket) =>
    new Promise<void>((resolve, reject) => {
      inTls = true;
      stage = 'the TLS handshake';
      const onError = (err: Error) => reject(classify(err, target, o.host, true, o.timeoutMs));
      sock.once('error', onError);
      sock.once('secureConnect', () => {
        sock.off('error', onError);
        inTls = false;
        resolve();
      });
    });
  const tlsOptions = { rejectUnauthorized: !o.insecureSkipTLSVerify, servername, host: o.host };

  const run = async (): Promise<number> => {
    if (o.tls === 'Implicit') {
      const sock = tlsConnect({ ...tlsOptions, port: o.port });
      sockets.push(sock);
      reader.attach(sock);
      // A refused connection or a DNS failure keeps its own reason (classify checks codes first).
      await handshake(sock);
    } else {
      const sock = netConnect({ host: o.host, port: o.port });
      sockets.push(sock);
      reader.attach(sock);
      stage = 'the connection';
      await new Promise<void>((resolve, reject) => {
        sock.once('connect', () => resolve());
        sock.once('error', (err) => reject(classify(err, target, o.host, false, o.timeoutMs)));
      });
    }
    await expect(
      'the banner',
      (r) => r.code === 220,
      (r) => new ProbeFailure('BadBanner', `${target} answered ${quoteSeen(r.text)} instead of a 220 banner`),
    );
    send(`EHLO ${helo}`);
    const ehlo = await expect(
      'the EHLO reply',
      (r) => r.code === 250,
      (r) => new ProbeFailure('SMTPError', `${target} answered ${quoteSeen(r.text)} to EHLO`),
    );
    if (o.tls === 'STARTTLS') {
      if (!ehlo.lines.some((l) => /^250[ -]STARTTLS\b/i.test(l))) {
        throw new ProbeFailure('SMTPError', `${target} does not offer STARTTLS (spec.primary.tls is STARTTLS)`);
      }
      send('STARTTLS');
      await expect(
        'the STARTTLS reply',
        (r) => r.code === 220,
        (r) => new ProbeFailure('SMTPError', `${target} answered ${quoteSeen(r.text)} to STARTTLS`),
      );
      if (reader.pending()) {
        // Anything sent before the handshake could be injected by a man in the middle.
        throw new ProbeFailure('SMTPError', `${target} sent data after its STARTTLS reply, before the TLS handshake`);
      }
      const raw = sockets[0]!;
      reader.detach();
      raw.on('error', () => undefined); // its errors also reach the TLS socket, which the reader watches
      const secure = tlsConnect({ ...tlsOptions, socket: raw });
      sockets.push(secure);
      reader.attach(secure);
      await handshake(secure);
      send(`EHLO ${helo}`);
      await expect(
        'the EHLO reply after STARTTLS',
        (r) => r.code === 250,
        (r) => new ProbeFailure('SMTPError', `${target} answered ${quoteSeen(r.text)} to EHLO after STARTTLS`),
      );
    }
    const latency = elapsed(start);
    // QUIT politely; the verdict is in, so its outcome does not matter.
    send('QUIT');
    stage = 'the QUIT reply';
    await reader.read().catch(() => undefined);
    return latency;
  };

  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      const f = new ProbeFailure('Timeout', `${target} did not answer within ${o.timeoutMs} ms (waiting for ${stage})`);
      reader.fail(f);
      reject(f);
    }, o.timeoutMs);
  });
  deadline.catch(() => undefined);
  const running = run();
  running.catch(() => undefined);
  try {
    const latencyMs = await Promise.race([running, deadline]);
    return { ok: true, latencyMs };
  } catch (err) {
    const f = classify(err, target, o.host, inTls, o.timeoutMs);
    return { ok: false, latencyMs: elapsed(start), reason: f.reason, message: f.message, probe: 'smtp' };
  } finally {
    clearTimeout(timer);
    reader.detach();
    for (const s of sockets) {
      s.on('error', () => undefined); // late errors after the verdict are not news
      s.destroy();
    }
  }
}

/** GETs url and compares the status with expectedStatus (default 200). */
export async function probeHttps(o: HttpsProbeOptions): Promise<ProbeResult> {
  const start = process.hrtime.bigint();
  const expected = o.expectedStatus ?? 200;
  let url: URL;
  try {
    url = new URL(o.url);
  } catch {
    return { ok: false, latencyMs: 0, reason: 'DNSError', message: `${quoteSeen(o.url)} is not a URL`, probe: 'https' };
  }
  const isHttps = url.protocol === 'https:';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const target = hostPort(host, Number(url.port || (isHttps ? 443 : 80)));
  let req: ClientRequest | undefined;
  let res: IncomingMessage | undefined;
  let timer: NodeJS.Timeout | undefined;
  let connected = false;
  const fail = (f: ProbeFailure): ProbeResult => ({
    ok: false,
    latencyMs: elapsed(start),
    reason: f.reason,
    message: f.message,
    probe: 'https',
  });
  try {
    const status = await new Promise<number>((resolve, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new ProbeFailure(
              'Timeout',
              `GET ${url.href} got no answer within ${o.timeoutMs} ms${connected ? '' : ` (no connection to ${target})`}`,
            ),
          ),
        o.timeoutMs,
      );
      const options = {
        method: 'GET',
        agent: false as const,
        headers: { 'user-agent': 'mail-continuity-operator health probe', connection: 'close' },
        ...(isHttps ? { rejectUnauthorized: !o.insecureSkipTLSVerify } : {}),
      };
      req = (isHttps ? httpsRequest : httpRequest)(url, options, (r) => {
        res = r;
        resolve(r.statusCode ?? 0);
      });
      req.on('socket', (s) => s.once('connect', () => (connected = true)));
      req.on('error', (err) => reject(classify(err, target, host, false, o.timeoutMs)));
      req.end();
    });
    if (status !== expected) {
      const f = new ProbeFailure('HTTPStatus', `GET ${url.href} answered ${status} (expected ${expected})`);
      return { ok: false, latencyMs: elapsed(start), reason: f.reason, message: f.message, probe: 'https', status };
    }
    return { ok: true, latencyMs: elapsed(start) };
  } catch (err) {
    return fail(classify(err, target, host, false, o.timeoutMs));
  } finally {
    clearTimeout(timer);
    const r = res as IncomingMessage | undefined;
    r?.on('error', () => undefined);
    r?.destroy();
    const q = req as ClientRequest | undefined;
    q?.on('error', () => undefined);
    q?.destroy();
  }
}

export interface ProbePrimaryOptions {
  /** Default: spec.health.timeoutSeconds. */
  timeoutMs?: number;
  heloName?: string;
}

/**
 * Runs the enabled probes of spec.primary (SMTP unless health.smtp.enabled is
 * false, HTTPS when health.https is set) side by side, so the whole takes at
 * most timeoutMs. The SMTP failure wins over the HTTPS one. With no probe
 * enabled the primary counts as healthy (latency 0): the spec asked not to
 * probe it, so automatic failover never starts.
 */
export async function probePrimary(primary: PrimarySpec, opts: ProbePrimaryOptions = {}): Promise<ProbeResult> {
  const timeoutMs = opts.timeoutMs ?? primary.health.timeoutSeconds * 1000;
  const probes: Promise<ProbeResult>[] = [];
  if (primary.health.smtp.enabled) {
    probes.push(
      probeSmtp({
        host: primary.host,
        port: primary.port,
        tls: primary.tls,
        insecureSkipTLSVerify: primary.insecureSkipTLSVerify,
        timeoutMs,
        heloName: opts.heloName,
      }),
    );
  }
  const https = primary.health.https;
  if (https) {
    probes.push(
      probeHttps({
        url: https.url,
        expectedStatus: https.expectedStatus,
        insecureSkipTLSVerify: https.insecureSkipTLSVerify,
        timeoutMs,
      }),
    );
  }
  const results = await Promise.all(probes);
  const latencyMs = Math.max(0, ...results.map((r) => r.latencyMs));
  const failed = results.find((r) => !r.ok);
  return failed ? { ...failed, latencyMs } : { ok: true, latencyMs };
}
