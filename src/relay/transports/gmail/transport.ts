// The backup transport: imports each spooled message into the recipients'
// Google Workspace mailboxes with users.messages.import (domain-wide
// delegation, scope gmail.insert), one import per distinct mailbox.
//
// The relay's scheduler owns retries: the googleapis client never retries by
// itself here, and every outcome is delivered / deferred (with a retryAfterMs
// hint) / failed. Each mailbox is paced by a token bucket below Gmail's
// 15,000 quota units per user per minute, so a replay never trips the 429s
// that the pacing exists to avoid.
import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { gmail as gmailApi, type gmail_v1 } from '@googleapis/gmail';
import { JWT } from 'google-auth-library';
import type { Logger } from 'pino';
import type { RelayConfig } from '../../../api/relay/config.js';
import { backoffMs } from '../../../lib/backoff.js';
import { forEachLimit } from '../../../lib/for-each-limit.js';
import { isLoopbackUrl } from '../../../lib/ip.js';
import { TokenBucket } from '../../../lib/token-bucket.js';
import { messageFileStream } from '../../spool/queue-file.js';
import type { RecipientOutcome, SpooledMessage, Transport } from '../../types.js';
import { mapAddress } from '../address-map.js';

export const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
export const GMAIL_ROOT_URL = 'https://gmail.googleapis.com/';
/** The only scope imports need: it cannot read a mailbox. */
export const GMAIL_INSERT_SCOPE = 'https://www.googleapis.com/auth/gmail.insert';
/**
 * users.messages.list with a `q` search needs gmail.readonly (gmail.metadata
 * rejects `q`). Only alreadyDelivered uses it; without that delegation it
 * answers false ("cannot tell"), as SMTP does.
 */
export const GMAIL_READONLY_SCOPE = 'https://www.googleapis.com/auth/gmail.readonly';
/** JWT clients (each with its cached access token) kept at most, least recently used dropped first. */
const MAX_CACHED_CLIENTS = 10_000;
/** Imports with an unknown outcome remembered for a duplicate check before the next attempt. */
const MAX_UNCERTAIN = 100_000;
/** Gmail's quota: units per call and per user per minute. */
export const GMAIL_UNITS = { import: 25, list: 5, perUserPerMinute: 15_000 } as const;
/** users.messages.import through the /upload endpoint takes messages up to 150 MB. */
export const GMAIL_MAX_MESSAGE_BYTES = 150 * 1024 * 1024;

export interface GmailTransportDeps {
  log: Logger;
  now?: () => number;
  /** Per-mailbox pacing in quota units; defaults stay below Gmail's 15,000/min with a margin. */
  pacing?: { unitsPerMinute?: number; burstUnits?: number };
  /** Imports of one message to different mailboxes that run at once (default 4). */
  concurrency?: number;
  /**
   * Request timeouts: a call gets `baseMs` plus the time to send the message at
   * `minBytesPerSecond` (a 150 MB import at the default 256 KiB/s: about 10 min).
   */
  timeouts?: { baseMs?: number; minBytesPerSecond?: number };
  /** Backoff hint when Google does not say when to retry: base * 2^(failures-1), capped. */
  backoff?: { baseMs?: number; maxMs?: number };
}

export type BackupReachability =
  | { reachable: true; reason: 'TokenGranted'; message: string }
  | {
      reachable: false;
      reason: 'DelegationMissing' | 'UnknownUser' | 'KeyRejected' | 'Unreachable' | 'TokenError';
      message: string;
    };

export interface GmailTransport extends Transport {
  /** Fetches an access token for `user` (BackupReachable condition); never throws. */
  checkBackupReachable(user: string): Promise<BackupReachability>;
}

interface ServiceAccountKey {
  client_email: string;
  private_key: string;
  private_key_id?: string;
  client_id?: string;
}

/** What a failed Google call means for the relay. */
export interface GoogleFailure {
  kind: 'deferred' | 'failed';
  detail: string;
  /** Google said when (Retry-After, or "Retry after <time>" in a 429's message). */
  retryAfterMs?: number;
  /** A quota answer (429, or 403 with a usageLimits reason): pause the mailbox. */
  rateLimited: boolean;
  /** The access token was refused (401): drop the cached client. */
  authRejected: boolean;
  /** The token endpoint failed: the Gmail API was never called. */
  tokenError?: boolean;
}

const QUOTA_REASONS = new Set([
  'rateLimitExceeded',
  'userRateLimitExceeded',
  'dailyLimitExceeded',
  'quotaExceeded',
  'concurrentLimitExceeded',
]);

interface ErrorLike {
  message?: unknown;
  code?: unknown;
  status?: unknown;
  response?: { status?: unknown; data?: unknown; headers?: unknown };
}

function headerOf(headers: unknown, name: string): string | undefined {
  if (!headers || typeof headers !== 'object') return undefined;
  const h = headers as { get?: (n: string) => string | null } & Record<string, unknown>;
  if (typeof h.get === 'function') return h.get(name) ?? undefined;
  const v = h[name] ?? h[name.toLowerCase()];
  return typeof v === 'string' ? v : undefined;
}

/** Milliseconds from Retry-After (seconds or HTTP date) or from Gmail's "Retry after <RFC 3339>" text. */
export function retryAfterFrom(headerValue: string | undefined, message: string, now: number): number | undefined {
  if (headerValue) {
    const secs = Number(headerValue);
    if (Number.isFinite(secs) && secs >= 0) return Math.max(1000, secs * 1000);
    const at = Date.parse(headerValue);
    if (!Number.isNaN(at)) return Math.max(1000, at - now);
  }
  const m = /Retry after (\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:?\d{2}))/i.exec(message);
  if (m) {
    const at = Date.parse(m[1]!);
    if (!Number.isNaN(at)) return Math.max(1000, at - now);
  }
  return undefined;
}

/** Classifies an error from google-auth-library (token) or the Gmail API. */
export function classifyGoogleError(err: unknown, mailbox: string, now: number): GoogleFailure {
  const e = (err ?? {}) as ErrorLike;
  const status =
    typeof e.response?.status === 'number' ? e.response.status : typeof e.status === 'number' ? e.status : undefined;
  const data = e.response?.data as Record<string, unknown> | undefined;
  const text = typeof e.message === 'string' ? e.message : String(err);
  const base = { rateLimited: false, authRejected: false };
  if (status === undefined) {
    const code = typeof e.code === 'string' ? ` (${e.code})` : '';
    return { ...base, kind: 'deferred', detail: `Google unreachable${code}: ${text}` };
  }
  // The OAuth2 token endpoint answers {error: "invalid_grant", error_description: "..."}.
  if (data && typeof data.error === 'string') {
    const desc = typeof data.error_description === 'string' ? data.error_description : '';
    if (data.error === 'invalid_grant' && /Invalid email or User ID/i.test(desc)) {
      return {
        ...base,
        kind: 'failed',
        detail: `Google has no Workspace user ${mailbox} (token: invalid_grant: ${desc}); fix spec.backup.gmail.addressMap or create the user`,
      };
    }
    const hint =
      data.error === 'unauthorized_client'
        ? ': grant the service account domain-wide delegation for https://www.googleapis.com/auth/gmail.insert in the Admin console'
        : data.error === 'invalid_grant'
          ? ': the service account key in spec.backup.gmail.serviceAccountSecretRef was refused (deleted or rotated key, or a clock far off)'
          : '';
    return {
      ...base,
      kind: 'deferred',
      tokenError: true,
      detail: `Google token endpoint ${status} ${data.error}: ${desc}${hint}`,
      ...(status === 429 || status >= 500
        ? { retryAfterMs: retryAfterFrom(headerOf(e.response?.headers, 'retry-after'), desc, now) }
        : {}),
    };
  }
  const apiErr = (data?.error ?? {}) as { message?: unknown; errors?: { reason?: unknown }[] };
  const message = typeof apiErr.message === 'string' ? apiErr.message : text;
  const reasons = Array.isArray(apiErr.errors) ? apiErr.errors.map((x) => String(x?.reason ?? '')) : [];
  const reason = reasons[0] ? ` ${reasons[0]}` : '';
  const detail = `Gmail ${status}${reason}: ${message}`;
  const retryAfterMs = retryAfterFrom(headerOf(e.response?.headers, 'retry-after'), message, now);
  const withRetry = retryAfterMs === undefined ? {} : { retryAfterMs };
  if (status === 429 || (status === 403 && reasons.some((r) => QUOTA_REASONS.has(r)))) {
    return { ...base, kind: 'deferred', detail, rateLimited: true, ...withRetry };
  }
  if (status >= 500 || status === 408) return { ...base, kind: 'deferred', detail, ...withRetry };
  if (status === 401) return { ...base, kind: 'deferred', detail, authRejected: true };
  return { ...base, kind: 'failed', detail };
}

function readServiceAccount(file: string | undefined): ServiceAccountKey {
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

interface MailboxState {
  bucket: TokenBucket;
  /** Google said to wait (429): no calls before this time. */
  pausedUntil: number;
  failures: number;
}

type ImportOutcome =
  | { ok: true; id: string }
  | { ok: false; kind: 'deferred' | 'failed'; detail: string; retryAfterMs?: number };

export function createGmailTransport(config: RelayConfig, deps: GmailTransportDeps): GmailTransport {
  const gmailSpec = config.spec.backup.gmail;
  if (gmailSpec.method !== 'GmailApi') {
    throw new Error(`spec.backup.gmail.method is ${gmailSpec.method}: the Gmail API transport needs method GmailApi`);
  }
  const tokenUrl = config.google.tokenUrl;
  if (tokenUrl !== undefined && !isLoopbackUrl(tokenUrl)) {
    throw new Error(
      `google.tokenUrl ${tokenUrl} is not a loopback address: it exists only to point tests at the Gmail emulator (127.0.0.0/8, ::1, localhost); remove it to use Google`,
    );
  }
  const rootUrl = config.google.rootUrl ?? GMAIL_ROOT_URL;
  if (config.google.rootUrl !== undefined && !isLoopbackUrl(rootUrl)) {
    const host = new URL(rootUrl).hostname;
    if (!(new URL(rootUrl).protocol === 'https:' && (host === 'googleapis.com' || host.endsWith('.googleapis.com')))) {
      throw new Error(
        `google.rootUrl ${rootUrl} is neither loopback nor a googleapis.com host: the relay would send mail and access tokens there; remove it to use Google`,
      );
    }
  }
  const key = readServiceAccount(config.paths.gmailServiceAccount);
  const log = deps.log.child({ component: 'gmail', serviceAccount: key.client_email });
  const now = deps.now ?? Date.now;
  const unitsPerMinute = deps.pacing?.unitsPerMinute ?? 13_500;
  const burstUnits = deps.pacing?.burstUnits ?? 1_000;
  if (unitsPerMinute > GMAIL_UNITS.perUserPerMinute) {
    throw new Error(`pacing.unitsPerMinute ${unitsPerMinute} exceeds Gmail's ${GMAIL_UNITS.perUserPerMinute} per user`);
  }
  const backoffBase = deps.backoff?.baseMs ?? 5_000;
  const backoffMax = deps.backoff?.maxMs ?? 10 * 60_000;
  const concurrency = Math.max(1, deps.concurrency ?? 4);
  const timeoutBase = deps.timeouts?.baseMs ?? 60_000;
  const minBytesPerSecond = deps.timeouts?.minBytesPerSecond ?? 256 * 1024;
  const timeoutFor = (bytes: number) => timeoutBase + Math.ceil((bytes * 1000) / minBytesPerSecond);
  const labelIds = gmailSpec.labelIds;
  const gmail: gmail_v1.Gmail = gmailApi({ version: 'v1', rootUrl, retry: false });
  const clients = new Map<string, JWT>();
  const mailboxes = new Map<string, MailboxState>();
  const warnedNoDedupScope = new Set<string>();
  /** "<spool id> <mailbox>" of imports whose outcome is unknown (no answer, or 5xx). */
  const uncertain = new Set<string>();
  let closed = false;

  function clientFor(subject: string, scope: string): JWT {
    const k = `${scope} ${subject}`;
    let client = clients.get(k);
    if (client) {
      // Keep the map in least-recently-used order.
      clients.delete(k);
      clients.set(k, client);
    } else {
      if (clients.size >= MAX_CACHED_CLIENTS) clients.delete(clients.keys().next().value!);
      client = new JWT({
        email: key.client_email,
        key: key.private_key,
        ...(key.private_key_id ? { keyId: key.private_key_id } : {}),
        scopes: [scope],
        subject,
      });
      // google-auth-library posts JWT grants to Google's fixed token URL, and
      // retries them by itself. Point them at the emulator when configured
      // (loopback only, checked above) and leave retries to the scheduler.
      client.transporter.interceptors.request.add({
        resolved: async (opts) => {
          if (String(opts.url) === GOOGLE_TOKEN_URL) {
            if (tokenUrl !== undefined) opts.url = new URL(tokenUrl);
            opts.retry = false;
            opts.timeout = timeoutBase;
            opts.retryConfig = { ...opts.retryConfig, retry: 0, noResponseRetries: 0 };
          }
          return opts;
        },
      });
      clients.set(k, client);
    }
    return client;
  }

  function stateOf(mailbox: string): MailboxState {
    let s = mailboxes.get(mailbox);
    if (!s) {
      s = { bucket: new TokenBucket(burstUnits, unitsPerMinute, now), pausedUntil: 0, failures: 0 };
      mailboxes.set(mailbox, s);
    }
    return s;
  }

  /** The Workspace mailbox for a recipient, normalised (Gmail addresses are case-insensitive). */
  const mailboxOf = (recipient: string) => mapAddress(gmailSpec.addressMap, recipient).toLowerCase();

  async function importInto(
    message: SpooledMessage,
    size: number,
    mailbox: string,
    signal?: AbortSignal,
  ): Promise<ImportOutcome> {
    const state = stateOf(mailbox);
    const t = now();
    if (state.pausedUntil > t) {
      return {
        ok: false,
        kind: 'deferred',
        detail: `Gmail rate limit for ${mailbox}: paused`,
        retryAfterMs: state.pausedUntil - t,
      };
    }
    const wait = state.bucket.take(GMAIL_UNITS.import);
    if (wait > 0) {
      return {
        ok: false,
        kind: 'deferred',
        detail: `pacing ${mailbox} below Gmail's per-user quota (${unitsPerMinute} units/min)`,
        retryAfterMs: wait,
      };
    }
    // An earlier attempt ended without an answer (timeout, dropped connection,
    // 5xx): Gmail may have stored the message. Look before importing again.
    const attempt = `${message.id} ${mailbox}`;
    if (uncertain.has(attempt) && message.messageId) {
      try {
        const found = await findByMessageId(mailbox, message.messageId);
        if (found) {
          uncertain.delete(attempt);
          state.failures = 0;
          log.info({ spoolId: message.id, mailbox, gmailId: found }, 'an earlier import had reached Gmail');
          return { ok: true, id: found };
        }
      } catch (err) {
        const f = classifyGoogleError(err, mailbox, now());
        state.failures++;
        const retryAfterMs = f.retryAfterMs ?? backoffMs(state.failures, backoffBase, backoffMax);
        return { ok: false, kind: 'deferred', detail: `duplicate check: ${f.detail}`, retryAfterMs };
      }
    }
    const body = message.body ? Readable.from([message.body]) : messageFileStream(message);
    try {
      const params: gmail_v1.Params$Resource$Users$Messages$Import = {
        userId: mailbox,
        internalDateSource: 'dateHeader',
        neverMarkSpam: gmailSpec.neverMarkSpam,
        processForCalendar: gmailSpec.processForCalendar,
        media: { mimeType: 'message/rfc822', body },
        // The JWT class of google-auth-library and the one googleapis-common was
        // built against are the same code in two versions; the client only calls request().
        auth: clientFor(
          mailbox,
          GMAIL_INSERT_SCOPE,
        ) as unknown as gmail_v1.Params$Resource$Users$Messages$Import['auth'],
        ...(labelIds.length > 0 ? { requestBody: { labelIds } } : {}),
      };
      const res = await gmail.users.messages.import(params, {
        rootUrl,
        retry: false,
        timeout: timeoutFor(size),
        ...(signal ? { signal } : {}),
      });
      state.failures = 0;
      uncertain.delete(attempt);
      const id = res.data.id ?? '';
      log.info({ spoolId: message.id, mailbox, gmailId: id, labelIds: res.data.labelIds }, 'imported into Gmail');
      return { ok: true, id };
    } catch (err) {
      const f = classifyGoogleError(err, mailbox, now());
      if (f.authRejected) {
        clients.delete(`${GMAIL_INSERT_SCOPE} ${mailbox}`);
      }
      if (f.kind === 'failed') {
        uncertain.delete(attempt);
        log.warn({ spoolId: message.id, mailbox, detail: f.detail }, 'Gmail refused the message');
        return { ok: false, kind: 'failed', detail: f.detail };
      }
      if (!f.rateLimited && !f.authRejected && !f.tokenError) {
        if (uncertain.size >= MAX_UNCERTAIN) uncertain.delete(uncertain.values().next().value!);
        uncertain.add(attempt);
      }
      state.failures++;
      const retryAfterMs = f.retryAfterMs ?? backoffMs(state.failures, backoffBase, backoffMax);
      if (f.rateLimited) state.pausedUntil = Math.max(state.pausedUntil, now() + retryAfterMs);
      log.warn({ spoolId: message.id, mailbox, detail: f.detail, retryAfterMs }, 'Gmail import deferred');
      return { ok: false, kind: 'deferred', detail: f.detail, retryAfterMs };
    } finally {
      body.destroy();
    }
  }

  async function deliver(
    message: SpooledMessage,
    recipients: string[],
    signal?: AbortSignal,
  ): Promise<RecipientOutcome[]> {
    if (closed) {
      return recipients.map((recipient) => ({ recipient, status: 'deferred', detail: 'Gmail transport is closed' }));
    }
    // A missing or oversized spool file never gets better: fail without calling Google.
    const size = message.size;
    try {
      if (!message.body) await stat(message.path);
    } catch (err) {
      const detail = `spool file ${message.path} unreadable: ${(err as Error).message}`;
      return recipients.map((recipient) => ({ recipient, status: 'failed', detail }));
    }
    if (size > GMAIL_MAX_MESSAGE_BYTES) {
      const detail = `message of ${size} bytes exceeds Gmail's import limit of ${GMAIL_MAX_MESSAGE_BYTES} bytes`;
      return recipients.map((recipient) => ({ recipient, status: 'failed', detail }));
    }
    const byMailbox = new Map<string, string[]>();
    for (const r of recipients) {
      const box = mailboxOf(r);
      byMailbox.set(box, [...(byMailbox.get(box) ?? []), r]);
    }
    const boxes = [...byMailbox.keys()];
    const results = new Array<ImportOutcome>(boxes.length);
    await forEachLimit(boxes, concurrency, async (box, i) => {
      results[i] = signal?.aborted ? { ok: false, kind: 'deferred', detail: 'delivery aborted' } : await importInto(message, size, box, signal);
    });
    const outcomes = new Map<string, RecipientOutcome>();
    boxes.forEach((box, i) => {
      const r = results[i]!;
      for (const recipient of byMailbox.get(box)!) {
        outcomes.set(
          recipient,
          r.ok
            ? { recipient, status: 'delivered', detail: r.id }
            : r.kind === 'failed'
              ? { recipient, status: 'failed', detail: r.detail }
              : {
                  recipient,
                  status: 'deferred',
                  detail: r.detail,
                  ...(r.retryAfterMs !== undefined ? { retryAfterMs: r.retryAfterMs } : {}),
                },
        );
      }
    });
    return recipients.map((r) => outcomes.get(r)!);
  }

  /**
   * The Gmail id of a message with this Message-ID in the mailbox; null when
   * there is none; undefined when the service account may not search (no
   * gmail.readonly delegation). Other errors throw.
   */
  async function findByMessageId(mailbox: string, messageId: string): Promise<string | null | undefined> {
    stateOf(mailbox).bucket.charge(GMAIL_UNITS.list);
    try {
      const res = await gmail.users.messages.list(
        {
          userId: mailbox,
          q: `rfc822msgid:${messageId}`,
          includeSpamTrash: true,
          maxResults: 1,
          auth: clientFor(
            mailbox,
            GMAIL_READONLY_SCOPE,
          ) as unknown as gmail_v1.Params$Resource$Users$Messages$List['auth'],
        },
        { rootUrl, retry: false, timeout: timeoutBase },
      );
      return res.data.messages?.[0]?.id ?? null;
    } catch (err) {
      const data = (err as ErrorLike).response?.data as { error?: unknown } | undefined;
      if (data?.error === 'unauthorized_client') {
        if (!warnedNoDedupScope.has(mailbox)) {
          warnedNoDedupScope.add(mailbox);
          log.warn(
            { mailbox },
            'cannot search Gmail for duplicates: the service account has no domain-wide delegation for gmail.readonly; a message in flight during a crash may be imported twice',
          );
        }
        return undefined;
      }
      throw err;
    }
  }

  async function alreadyDelivered(message: SpooledMessage, recipient: string): Promise<boolean> {
    if (!message.messageId) return false;
    const mailbox = mailboxOf(recipient);
    try {
      return ((await findByMessageId(mailbox, message.messageId)) ?? null) !== null;
    } catch (err) {
      throw new Error(`alreadyDelivered(${mailbox}): ${classifyGoogleError(err, mailbox, now()).detail}`, {
        cause: err,
      });
    }
  }

  async function checkBackupReachable(user: string): Promise<BackupReachability> {
    const mailbox = mailboxOf(user);
    try {
      await clientFor(mailbox, GMAIL_INSERT_SCOPE).getAccessToken();
      return { reachable: true, reason: 'TokenGranted', message: `Google granted an access token for ${mailbox}` };
    } catch (err) {
      const f = classifyGoogleError(err, mailbox, now());
      const data = (err as ErrorLike).response?.data as { error?: unknown } | undefined;
      const reason =
        data?.error === 'unauthorized_client'
          ? 'DelegationMissing'
          : f.kind === 'failed'
            ? 'UnknownUser'
            : data?.error === 'invalid_grant'
              ? 'KeyRejected'
              : (err as ErrorLike).response === undefined
                ? 'Unreachable'
                : 'TokenError';
      return { reachable: false, reason, message: f.detail };
    }
  }

  return {
    destination: 'backup',
    deliver,
    alreadyDelivered,
    checkBackupReachable,
    async close() {
      closed = true;
      clients.clear();
      mailboxes.clear();
    },
  };
}

/**
 * For the BackupReachable condition: can the service account get an access
 * token (scope gmail.insert) for `user`? Never throws for Google's answers.
 */
export async function checkBackupReachable(
  config: RelayConfig,
  deps: GmailTransportDeps,
  user: string,
): Promise<BackupReachability> {
  const transport = createGmailTransport(config, deps);
  try {
    return await transport.checkBackupReachable(user);
  } finally {
    await transport.close();
  }
}
