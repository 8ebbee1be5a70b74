// The service account's key and its JWT clients (domain-wide delegation: one
// client, with its cached access token, per scope and impersonated mailbox).
import { readFileSync } from 'node:fs';
import type { Agent } from 'node:http';
import { JWT } from 'google-auth-library';

export const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
/** JWT clients (each with its cached access token) kept at most, least recently used dropped first. */
const MAX_CACHED_CLIENTS = 10_000;

export interface ServiceAccountKey {
  client_email: string;
  private_key: string;
  private_key_id?: string;
  client_id?: string;
}

export function readServiceAccount(file: string | undefined): ServiceAccountKey {
  if (!file) {
    throw new Error(
      'paths.gmailServiceAccount is not set: mount the Secret named in spec.backup.gmail.serviceAccountSecretRef and give its path',
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(
      `paths.gmailServiceAccount (${file}): cannot read the service account JSON key: ${(err as Error).message}`,
    );
  }
  const k = parsed as Partial<ServiceAccountKey> & { type?: unknown };
  if (
    k?.type !== 'service_account' ||
    typeof k.client_email !== 'string' ||
    typeof k.private_key !== 'string' ||
    !k.private_key.includes('PRIVATE KEY')
  ) {
    throw new Error(
      `paths.gmailServiceAccount (${file}): not a service account JSON key (needs type "service_account", client_email and private_key); download a JSON key of the service account in the Cloud console`,
    );
  }
  return k as ServiceAccountKey;
}

/** JWT clients by scope and subject, least recently used dropped first. */
export class ServiceAccountClients {
  private readonly clients = new Map<string, JWT>();

  /**
   * @param tokenUrl the token endpoint instead of Google's (loopback only: the caller checks it)
   * @param timeoutMs for each token request
   * @param agentFor the keep-alive HTTP agent for a URL (agents.ts)
   */
  constructor(
    private key: ServiceAccountKey,
    private readonly tokenUrl: string | undefined,
    private readonly timeoutMs: number,
    private readonly agentFor?: (url: string) => Agent,
  ) {}

  /** The client for `subject` (undefined: the service account itself, without delegation). */
  get(subject: string | undefined, scope: string): JWT {
    const k = `${scope} ${subject ?? ''}`;
    let client = this.clients.get(k);
    if (client) {
      // Keep the map in least-recently-used order.
      this.clients.delete(k);
      this.clients.set(k, client);
      return client;
    }
    if (this.clients.size >= MAX_CACHED_CLIENTS) this.clients.delete(this.clients.keys().next().value!);
    client = new JWT({
      email: this.key.client_email,
      key: this.key.private_key,
      ...(this.key.private_key_id ? { keyId: this.key.private_key_id } : {}),
      scopes: [scope],
      subject,
    });
    // google-auth-library posts JWT grants to Google's fixed token URL, and
    // retries them by itself. Point them at the emulator when configured
    // and leave retries to the scheduler.
    const { tokenUrl, timeoutMs, agentFor } = this;
    client.transporter.interceptors.request.add({
      resolved: async (opts) => {
        if (String(opts.url) === GOOGLE_TOKEN_URL) {
          if (tokenUrl !== undefined) opts.url = new URL(tokenUrl);
          opts.retry = false;
          opts.timeout = timeoutMs;
          opts.retryConfig = { ...opts.retryConfig, retry: 0, noResponseRetries: 0 };
          if (agentFor) opts.agent = agentFor(String(opts.url));
        }
        return opts;
      },
    });
    this.clients.set(k, client);
    return client;
  }

  /** A new key (the mounted Secret changed): clients are made with it from now on. */
  setKey(key: ServiceAccountKey): void {
    this.key = key;
    this.clients.clear();
  }

  /** Drops a client whose access token was refused. */
  drop(subject: string, scope: string): void {
    this.clients.delete(`${scope} ${subject}`);
  }

  clear(): void {
    this.clients.clear();
  }
}
