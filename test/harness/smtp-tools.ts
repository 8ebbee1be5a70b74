// Real SMTP tools for the tests, each bounded in count and time: swaks (one
// transaction, full transcript), smtp-source (load) and smtp-sink (a fast sink
// that records every message so tests can count them).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MailContinuitySpecInput } from '../../src/api/v1alpha1/mailcontinuity.js';
import { RelayConfig, type RelayConfigInput } from '../../src/api/relay/config.js';
import { SmtpReplyReader } from '../../src/lib/smtp-reply.js';
import { freePort, waitForPort } from './postfix.js';

export interface SwaksResult {
  /** swaks exit code: 0 ok, 23/24/25 refused at MAIL/RCPT/DATA, 21 at connect... */
  code: number;
  transcript: string;
  /** Every server reply line ("250 2.0.0 Ok..."), in order. */
  replies: string[];
}

export interface SwaksOptions {
  port: number;
  /** Server address (default 127.0.0.1). */
  host?: string;
  from?: string;
  to: string | string[];
  headers?: string[];
  body?: string;
  /** Raw DATA (swaks --data): replaces headers/body. */
  data?: string;
  extra?: string[];
  timeoutMs?: number;
}

export function swaks(o: SwaksOptions): Promise<SwaksResult> {
  const args = [
    '--server', `${o.host ?? '127.0.0.1'}:${o.port}`,
    '--from', o.from ?? 'sender@partner.example.net',
    '--to', Array.isArray(o.to) ? o.to.join(',') : o.to,
    '--helo', 'mx.partner.example.net',
    '--timeout', '30',
    '--hide-informational',
  ];
  // --header replaces a header swaks would generate (Message-Id, Date), --add-header would duplicate it.
  // swaks matches header names case-sensitively and spells it Message-Id.
  for (const h of o.headers ?? []) args.push('--header', h.replace(/^message-id:/i, 'Message-Id:'));
  if (o.body !== undefined) args.push('--body', o.body);
  if (o.data !== undefined) args.push('--data', o.data);
  args.push(...(o.extra ?? []));
  return new Promise((resolve) => {
    execFile('swaks', args, { timeout: o.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      const transcript = `${stdout}${stderr}`;
      const replies = transcript
        .split('\n')
        .filter((l) => /^\s*<[-~*]+\s+\d{3}[ -]/.test(l))
        .map((l) => l.replace(/^\s*<[-~*]+\s+/, '').trimEnd());
      resolve({ code, transcript, replies });
    });
  });
}

export interface SmtpSourceOptions {
  port: number;
  messages: number;
  sessions: number;
  from?: string;
  to: string;
  /** Message body length in bytes (-l). */
  length?: number;
  /** Prepend a sequence number to each recipient (-N): distinct recipients. */
  numberRecipients?: boolean;
  /** Several messages per connection (-d). */
  reuseConnections?: boolean;
  timeoutMs: number;
}

export interface SmtpSourceResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  elapsedMs: number;
}

/** Runs smtp-source to the end or until timeoutMs (then kills it). */
export function smtpSource(o: SmtpSourceOptions): Promise<SmtpSourceResult> {
  const args = ['-m', String(o.messages), '-s', String(o.sessions), '-f', o.from ?? 'load@partner.example.net', '-t', o.to, '-M', 'load.partner.example.net'];
  if (o.length !== undefined) args.push('-l', String(o.length));
  if (o.numberRecipients) args.push('-N');
  if (o.reuseConnections) args.push('-d');
  args.push(`127.0.0.1:${o.port}`);
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn('smtp-source', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, o.timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut, elapsedMs: Date.now() - started });
    });
  });
}

export interface SmtpSink {
  port: number;
  /** Messages received so far. */
  count(): Promise<number>;
  /** Message-IDs received so far (with repeats). */
  messageIds(): Promise<string[]>;
  /** The recorded messages (smtp-sink's dump: X-Client-Addr/X-Rcpt-Args headers, then the message). */
  dump(): Promise<string>;
  waitForCount(n: number, timeoutMs: number): Promise<number>;
  stop(): Promise<void>;
}

/** smtp-sink on 127.0.0.1:<free port>, dumping every message into one file. */
export async function startSmtpSink(opts: { port?: number; backlog?: number } = {}): Promise<SmtpSink> {
  const dir = await mkdtemp(join(tmpdir(), 'smtp-sink-'));
  const port = opts.port ?? (await freePort());
  const dumpFile = join(dir, 'dump');
  const child: ChildProcess = spawn('smtp-sink', ['-u', 'root', '-D', dumpFile, `127.0.0.1:${port}`, String(opts.backlog ?? 256)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  try {
    await waitForPort(port, 'up', 15_000);
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`smtp-sink did not start: ${(e as Error).message} ${stderr}`);
  }
  const dump = () => readFile(dumpFile, 'utf8').catch(() => '');
  // Counting reads only what smtp-sink appended since the last call: a benchmark polls
  // a dump of hundreds of megabytes without reading it again each time.
  const marker = Buffer.from('\nX-Client-Addr: ');
  let offset = 0;
  let counted = 0;
  let tail = Buffer.from('\n');
  const sink: SmtpSink = {
    port,
    dump,
    async count() {
      const fh = await open(dumpFile, 'r').catch(() => undefined);
      if (!fh) return counted;
      try {
        const { size } = await fh.stat();
        const chunk = Buffer.alloc(Math.min(8 << 20, Math.max(0, size - offset)));
        while (offset < size) {
          const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, size - offset), offset);
          if (bytesRead === 0) break;
          offset += bytesRead;
          const buf = Buffer.concat([tail, chunk.subarray(0, bytesRead)]);
          for (let i = buf.indexOf(marker); i !== -1; i = buf.indexOf(marker, i + 1)) counted++;
          tail = Buffer.from(buf.subarray(Math.max(0, buf.length - marker.length + 1)));
        }
      } finally {
        await fh.close();
      }
      return counted;
    },
    async messageIds() {
      return [...(await dump()).matchAll(/^Message-Id:\s*<([^>\r\n]+)>/gim)].map((m) => m[1]!);
    },
    async waitForCount(n, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const c = await sink.count();
        if (c >= n) return c;
        if (Date.now() > deadline) throw new Error(`smtp-sink: ${c} of ${n} messages after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 3000)))]);
        clearTimeout(timer);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  return sink;
}

/** Runs a command with a time bound; resolves with its output (never rejects). */
export function runBounded(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: unknown }).code) || -1 : 0, out: `${stdout}${stderr}` });
    });
  });
}

// ---------------------------------------------------------------- relay test config


export const TEST_DOMAINS = ['corp.example.com', 'example.org'];

export interface RelayTestConfigOptions {
  spool: string;
  primaryPort: number;
  /** Backup SmtpRelay port (a sink); default: a port nothing listens on. */
  backupPort?: number;
  spec?: Partial<MailContinuitySpecInput>;
  tuning?: RelayConfigInput['tuning'];
  paths?: Partial<RelayConfigInput['paths']>;
  instance?: string;
  /** SMTP listen port (default 0: any free port, for in-process relays). */
  listenPort?: number;
}

/** A relay config on loopback: primary = the Postfix stand-in (no TLS), backup = SmtpRelay to a sink; fast timers. */
export function relayTestConfig(o: RelayTestConfigOptions): RelayConfig {
  const spec: MailContinuitySpecInput = {
    domains: TEST_DOMAINS,
    mode: 'FailoverOnly',
    primary: { host: '127.0.0.1', port: o.primaryPort, tls: 'None' },
    backup: {
      gmail: {
        method: 'SmtpRelay',
        smtpRelay: { host: '127.0.0.1', port: o.backupPort ?? 9 },
        addressMap: [{ from: '@corp.example.com', to: '@corp.example.org' }],
      },
    },
    relay: { acceptFrom: ['127.0.0.0/8'] },
    failover: { messageDeadline: '15m' },
    ...o.spec,
  };
  return RelayConfig.parse({
    instance: o.instance ?? 'relay-test',
    spec,
    listen: { host: '127.0.0.1', port: o.listenPort ?? 0, hostname: 'relay.test' },
    http: { host: '127.0.0.1', port: 0 },
    paths: { spool: o.spool, ...o.paths },
    tuning: { minBackoffMs: 300, maxBackoffMs: 2000, sweepIntervalMs: 200, spoolMinFreeBytes: 0, ...o.tuning },
  });
}

// ---------------------------------------------------------------- raw SMTP sessions


/** A raw SMTP client for malformed input: write anything, read replies with timeouts. */
export class RawSmtp {
  /** Whatever a server under test sends is read, however long (the relay's limits are not the tests'). */
  private readonly replies = new SmtpReplyReader({ encoding: 'latin1', maxLine: 1 << 20, maxReply: 1 << 20 });
  closed = false;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (c: Buffer) => this.replies.push(c));
    socket.on('close', () => {
      this.closed = true;
      this.replies.fail(new Error('the server closed the connection'));
    });
    socket.on('error', () => undefined);
  }

  static async open(port: number, timeoutMs = 10_000, localAddress?: string): Promise<RawSmtp> {
    const socket = netConnect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
      setTimeout(() => reject(new Error('connect timeout')), timeoutMs).unref();
    });
    return new RawSmtp(socket);
  }

  write(data: string | Buffer): void {
    if (!this.closed) this.socket.write(data);
  }

  /**
   * Waits for the next complete reply (last line "NNN " form) and consumes it.
   * Returns the reply text; throws on timeout; returns '' when the server closed.
   */
  async reply(timeoutMs = 10_000): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no SMTP reply within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return (await Promise.race([this.replies.next(), timeout])).lines.join('\r\n');
    } catch (e) {
      if (this.closed) return '';
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends one command line (CRLF added) and returns its reply. */
  async cmd(line: string, timeoutMs = 10_000): Promise<string> {
    this.write(`${line}\r\n`);
    return this.reply(timeoutMs);
  }

  /** Waits until the server closes the connection. */
  async waitClosed(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('server did not close the connection');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
