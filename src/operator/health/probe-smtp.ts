// The SMTP probe of the primary: banner, EHLO, STARTTLS handshake when the
// relay would use it, EHLO again, QUIT. latencyMs is the time until the
// verdict (the end of the last EHLO; the QUIT exchange is courtesy and does
// not count). Bounded as a whole by timeoutMs; always closes its sockets.
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { SmtpReplyReader, type SmtpReply } from '../../lib/smtp-reply.js';
import { trustedCa, untrustedCaHint } from '../../lib/tls-trust.js';
import { classify, elapsed, hostPort, ProbeFailure, quoteSeen, type ProbeResult, type TlsMode } from './probe-result.js';

export interface SmtpProbeOptions {
  host: string;
  port: number;
  tls: TlsMode;
  insecureSkipTLSVerify?: boolean;
  /** PEM CA certificates trusted in addition to the system roots (spec.primary.caBundle / caSecretRef). */
  ca?: string;
  timeoutMs: number;
  /** Name sent with EHLO (default: this host's name). */
  heloName?: string;
}

/** Replies longer than this (all lines together) count as a protocol error. */
const MAX_REPLY_BYTES = 64 * 1024;

/** The SMTP replies of a socket that may be swapped for its TLS wrapper; its close or error fails the read. */
class SocketReplies {
  private readonly reader = new SmtpReplyReader({
    encoding: 'latin1',
    maxLine: MAX_REPLY_BYTES,
    maxReply: MAX_REPLY_BYTES,
    // Not an SMTP reply: handed on as code 0, so the step that waited fails with what was seen.
    onProblem: (p) => ({ code: 0, lines: p.lines }),
  });
  private detachCurrent: (() => void) | undefined;

  constructor(
    /** What a close of the connection means at this point. */
    private readonly closeMeaning: () => ProbeFailure,
    /** What a socket error means at this point. */
    private readonly errorMeaning: (err: unknown) => ProbeFailure,
  ) {}

  attach(sock: Socket): void {
    this.detachCurrent?.();
    const onData = (chunk: Buffer) => this.reader.push(chunk);
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
    return this.reader.pending();
  }

  fail(f: ProbeFailure): void {
    this.reader.fail(f);
  }

  read(): Promise<SmtpReply> {
    return this.reader.next();
  }
}

/** What a peer said, for a condition message. */
const seen = (r: SmtpReply) => quoteSeen(r.lines.join('\n'));

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

  const reader = new SocketReplies(
    () =>
      inTls
        ? new ProbeFailure('TLSError', `${target} closed the connection during the TLS handshake`)
        : new ProbeFailure('ConnectionReset', `${target} closed the connection while the probe waited for ${stage}`),
    (err) => classify(err, target, o.host, inTls, o.timeoutMs),
  );

  const expect = async (what: string, ok: (r: SmtpReply) => boolean, fail: (r: SmtpReply) => ProbeFailure): Promise<SmtpReply> => {
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
      const onError = (err: Error) => {
        const f = classify(err, target, o.host, true, o.timeoutMs);
        reject(new ProbeFailure(f.reason, f.message + untrustedCaHint(err, !!o.ca)));
      };
      sock.once('error', onError);
      sock.once('secureConnect', () => {
        sock.off('error', onError);
        inTls = false;
        resolve();
      });
    });
  const tlsOptions = {
    rejectUnauthorized: !o.insecureSkipTLSVerify,
    servername,
    host: o.host,
    ...(o.ca ? { ca: trustedCa(o.ca) } : {}),
  };

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
      (r) => new ProbeFailure('BadBanner', `${target} answered ${seen(r)} instead of a 220 banner`),
    );
    send(`EHLO ${helo}`);
    const ehlo = await expect(
      'the EHLO reply',
      (r) => r.code === 250,
      (r) => new ProbeFailure('SMTPError', `${target} answered ${seen(r)} to EHLO`),
    );
    if (o.tls === 'STARTTLS') {
      if (!ehlo.lines.some((l) => /^250[ -]STARTTLS\b/i.test(l))) {
        throw new ProbeFailure('SMTPError', `${target} does not offer STARTTLS (spec.primary.tls is STARTTLS)`);
      }
      send('STARTTLS');
      await expect(
        'the STARTTLS reply',
        (r) => r.code === 220,
        (r) => new ProbeFailure('SMTPError', `${target} answered ${seen(r)} to STARTTLS`),
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
        (r) => new ProbeFailure('SMTPError', `${target} answered ${seen(r)} to EHLO after STARTTLS`),
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
