// What a probe concludes: healthy with a latency, or a failure with a
// CamelCase reason (for the PrimaryHealthy condition) and a short sentence that
// names host:port and what was seen; and how socket errors map to reasons.
import { isIP } from 'node:net';
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

export class ProbeFailure extends Error {
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
export function classify(err: unknown, target: string, host: string, tlsStage: boolean, timeoutMs: number): ProbeFailure {
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

export function elapsed(start: bigint): number {
  return Math.round(Number(process.hrtime.bigint() - start) / 1e6);
}

export function hostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
