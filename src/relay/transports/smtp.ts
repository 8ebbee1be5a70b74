// SMTP delivery through a nodemailer connection pool: to the primary (Exchange)
// and, for backup method SmtpRelay, to smtp-relay.gmail.com with the address
// map applied. Per-recipient outcomes: 2xx delivered, 4xx and connection
// trouble deferred, 5xx failed.
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import nodemailer from 'nodemailer';
import type { Logger } from 'pino';
import type { RelayConfig } from '../config.js';
import { isLoopbackHost } from '../net.js';
import type { Destination, RecipientOutcome, SpooledMessage, Transport } from '../types.js';
import { mapAddress, type AddressRule } from './gmail.js';

export interface SmtpTransportOptions {
  destination: Destination;
  host: string;
  port: number;
  tls: 'STARTTLS' | 'Implicit' | 'None';
  /** STARTTLS only when offered (never with credentials). */
  opportunisticTLS?: boolean;
  insecureSkipTLSVerify?: boolean;
  auth?: { user: string; pass: string };
  maxConnections: number;
  /** EHLO name. */
  name: string;
  addressMap?: readonly AddressRule[];
  timeoutMs?: number;
  log: Logger;
}

interface SmtpError extends Error {
  code?: string;
  responseCode?: number;
  response?: string;
  recipient?: string;
  rejectedErrors?: SmtpError[];
}

function outcomeFor(recipient: string, err: SmtpError): RecipientOutcome {
  const code = err.responseCode;
  const detail = (err.response ?? err.message).slice(0, 500);
  if (code !== undefined && code >= 500 && code < 600) return { recipient, status: 'failed', detail };
  return { recipient, status: 'deferred', detail };
}

export function createSmtpTransport(o: SmtpTransportOptions): Transport {
  const pool = nodemailer.createTransport({
    pool: true,
    host: o.host,
    port: o.port,
    name: o.name,
    maxConnections: o.maxConnections,
    maxMessages: 1000,
    secure: o.tls === 'Implicit',
    ignoreTLS: o.tls === 'None',
    requireTLS: o.tls === 'STARTTLS' && !o.opportunisticTLS,
    tls: { rejectUnauthorized: !o.insecureSkipTLSVerify, servername: o.host },
    ...(o.auth ? { auth: o.auth } : {}),
    connectionTimeout: o.timeoutMs ?? 30_000,
    greetingTimeout: o.timeoutMs ?? 30_000,
    socketTimeout: (o.timeoutMs ?? 30_000) * 4,
    disableFileAccess: true,
    disableUrlAccess: true,
  });

  return {
    destination: o.destination,
    async deliver(message: SpooledMessage, recipients: string[], signal?: AbortSignal): Promise<RecipientOutcome[]> {
      if (signal?.aborted) return recipients.map((r) => ({ recipient: r, status: 'deferred', detail: 'aborted' }));
      // Envelope recipient -> the recipients it stands for (the map may merge addresses).
      const byTarget = new Map<string, string[]>();
      for (const r of recipients) {
        const t = o.addressMap ? mapAddress(o.addressMap, r) : r;
        byTarget.set(t, [...(byTarget.get(t) ?? []), r]);
      }
      const expand = (target: string, f: (r: string) => RecipientOutcome) => (byTarget.get(target) ?? []).map(f);
      // Destroyed in every case: a delivery that fails before DATA never reads it, and an open
      // descriptor would keep a removed spool file's space allocated.
      const raw = createReadStream(message.path);
      raw.on('error', () => undefined);
      try {
        const info = (await pool.sendMail({
          envelope: { from: message.mailFrom, to: [...byTarget.keys()] },
          raw,
        })) as { accepted?: unknown[]; rejected?: unknown[]; rejectedErrors?: SmtpError[]; response?: string };
        const out: RecipientOutcome[] = [];
        const rejected = new Map<string, SmtpError>();
        for (const e of info.rejectedErrors ?? []) if (e.recipient) rejected.set(e.recipient, e);
        for (const target of byTarget.keys()) {
          const e = rejected.get(target);
          out.push(...expand(target, (r) => (e ? outcomeFor(r, e) : { recipient: r, status: 'delivered', detail: (info.response ?? '250').slice(0, 300) })));
        }
        return out;
      } catch (e) {
        const err = e as SmtpError;
        const perRcpt = new Map<string, SmtpError>();
        for (const re of err.rejectedErrors ?? []) if (re.recipient) perRcpt.set(re.recipient, re);
        const out: RecipientOutcome[] = [];
        for (const target of byTarget.keys()) out.push(...expand(target, (r) => outcomeFor(r, perRcpt.get(target) ?? err)));
        return out;
      } finally {
        raw.destroy();
      }
    },
    async close(): Promise<void> {
      pool.close();
    },
  };
}

async function readSecretFile(path: string | undefined): Promise<string | undefined> {
  return path === undefined ? undefined : (await readFile(path, 'utf8')).trim();
}

/** The primary (Exchange) transport from spec.primary and the credential files. */
export async function createPrimaryTransport(config: RelayConfig, log: Logger): Promise<Transport> {
  const p = config.spec.primary;
  const user = await readSecretFile(config.paths.primaryUsername);
  const pass = await readSecretFile(config.paths.primaryPassword);
  return createSmtpTransport({
    destination: 'primary',
    host: p.host,
    port: p.port,
    tls: p.tls,
    insecureSkipTLSVerify: p.insecureSkipTLSVerify,
    ...(user !== undefined && pass !== undefined ? { auth: { user, pass } } : {}),
    maxConnections: config.tuning.primaryConcurrency,
    name: config.listen.hostname,
    log: log.child({ destination: 'primary' }),
  });
}

/**
 * The backup through Google Workspace's SMTP relay (spec.backup.gmail.method
 * SmtpRelay): STARTTLS with certificate verification is required, except
 * towards a loopback address (the test sinks), where it is used when offered.
 */
export function createSmtpRelayBackupTransport(config: RelayConfig, log: Logger): Transport {
  const g = config.spec.backup.gmail;
  const host = g.smtpRelay?.host ?? 'smtp-relay.gmail.com';
  return createSmtpTransport({
    destination: 'backup',
    host,
    port: g.smtpRelay?.port ?? 587,
    tls: 'STARTTLS',
    opportunisticTLS: isLoopbackHost(host),
    maxConnections: config.tuning.backupConcurrency,
    name: config.listen.hostname,
    addressMap: g.addressMap,
    log: log.child({ destination: 'backup' }),
  });
}
