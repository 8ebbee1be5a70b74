// SMTP delivery through the relay's own connection pool (pool.ts): to
// the primary (Exchange) and, for backup method SmtpRelay, to
// smtp-relay.gmail.com with the address map applied. Per-recipient outcomes:
// 2xx delivered, 4xx and connection trouble deferred, 5xx failed.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { RelayConfig } from '../../../api/relay/config.js';
import { isLoopbackHost } from '../../../lib/ip.js';
import type { Destination, RecipientOutcome, SpooledMessage, Transport } from '../../types.js';
import { mapAddress, type AddressRule } from '../address-map.js';
import { SmtpPool, type SmtpClientOptions } from './pool.js';

export interface SmtpTransportOptions extends SmtpClientOptions {
  destination: Destination;
  addressMap?: readonly AddressRule[];
}

export function createSmtpTransport(o: SmtpTransportOptions): Transport {
  const pool = new SmtpPool(o);
  return {
    destination: o.destination,
    async deliver(message: SpooledMessage, recipients: string[], signal?: AbortSignal): Promise<RecipientOutcome[]> {
      // Envelope recipient -> the recipients it stands for (the map may merge addresses).
      const byTarget = new Map<string, string[]>();
      for (const r of recipients) {
        const t = o.addressMap ? mapAddress(o.addressMap, r) : r;
        byTarget.set(t, [...(byTarget.get(t) ?? []), r]);
      }
      const outcomes = await pool.send(message.mailFrom, [...byTarget.keys()], message, signal);
      return outcomes.flatMap((t) => (byTarget.get(t.recipient) ?? []).map((recipient) => ({ ...t, recipient })));
    },
    close(): Promise<void> {
      return pool.close();
    },
  };
}

async function readSecretFile(path: string | undefined): Promise<string | undefined> {
  return path === undefined ? undefined : (await readFile(path, 'utf8')).trim();
}

/**
 * The SMTP AUTH credentials for the primary (paths.primaryUsername/primaryPassword), or
 * undefined without them. The transport uses the object it is given at each AUTH: to take
 * changed files, assign the fields of a fresh reading to it.
 */
export async function readPrimaryAuth(config: RelayConfig): Promise<{ user: string; pass: string } | undefined> {
  const user = await readSecretFile(config.paths.primaryUsername);
  const pass = await readSecretFile(config.paths.primaryPassword);
  return user !== undefined && pass !== undefined ? { user, pass } : undefined;
}

/** The primary (Exchange) transport from spec.primary and the credential files (`auth`: readPrimaryAuth's). */
export async function createPrimaryTransport(config: RelayConfig, log: Logger, auth?: { user: string; pass: string }): Promise<Transport> {
  const p = config.spec.primary;
  // spec.primary.caBundle, or the caSecretRef key the operator mounted.
  const ca = p.caBundle ?? (await readSecretFile(config.paths.primaryCa));
  return createSmtpTransport({
    destination: 'primary',
    host: p.host,
    port: p.port,
    tls: p.tls,
    insecureSkipTLSVerify: p.insecureSkipTLSVerify,
    ...(ca ? { ca } : {}),
    ...(auth ? { auth } : {}),
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
