// What the SMTP client is told, and the error of a session that failed as a whole.
import type { Logger } from 'pino';

export interface SmtpClientOptions {
  host: string;
  port: number;
  tls: 'STARTTLS' | 'Implicit' | 'None';
  /** STARTTLS only when offered. */
  opportunisticTLS?: boolean;
  insecureSkipTLSVerify?: boolean;
  /** PEM CA certificates trusted in addition to the system roots (spec.primary.caBundle / caSecretRef). */
  ca?: string;
  auth?: { user: string; pass: string };
  maxConnections: number;
  /** EHLO name. */
  name: string;
  /** Connect, greeting and each command reply (smtp_connect_timeout, smtp_helo_timeout...); default 30 s. */
  timeoutMs?: number;
  log: Logger;
}

/** A connection-level failure; `permanent` only for a 5xx greeting or HELO (the host refuses us). */
export class SmtpSessionError extends Error {
  constructor(
    message: string,
    readonly opts: { permanent?: boolean; timeout?: boolean } = {},
  ) {
    super(message);
  }
}
