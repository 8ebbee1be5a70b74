// The backup transport: imports each spooled message into the recipients'
// Google Workspace mailboxes with users.messages.import (domain-wide
// delegation, scope gmail.insert), one import per distinct mailbox.
//
// The relay's scheduler owns retries: the googleapis client never retries by
// itself here, and every outcome is delivered / deferred (with a retryAfterMs
// hint) / failed. Each mailbox is paced (pacing.ts); Google's errors are
// mapped in google-errors.ts; the JWT clients live in service-account.ts. The
// scheduler keeps as many deliveries in flight as window.ts asks for (Google's
// latency times this relay's share of the project quota), over keep-alive
// connections (agents.ts).
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { gmail as gmailApi, type gmail_v1 } from '@googleapis/gmail';
import type { Logger } from 'pino';
import { GMAIL_MAILBOX_UNITS_PER_MINUTE } from '../../../api/relay/admin.js';
import type { RelayConfig } from '../../../api/relay/config.js';
import { forEachLimit } from '../../../lib/for-each-limit.js';
import { isLoopbackUrl } from '../../../lib/ip.js';
import { messageFileStream } from '../../spool/queue-file.js';
import type { RecipientOutcome, SpooledMessage, Transport } from '../../types.js';
import { mapAddress } from '../address-map.js';
import { dedupQuery } from './dedup-query.js';
import { classifyGoogleError, oauthErrorOf, unreachableBecause, type BackupReachability } from './google-errors.js';
import { KeepAliveAgents } from './agents.js';
import { MailboxPacing, type PacingOptions } from './pacing.js';
import { ServiceAccountClients, readServiceAccount } from './service-account.js';
import { ImportWindow, MAX_WINDOW, targetImportsPerSecond } from './window.js';

export type { BackupReachability } from './google-errors.js';

export const GMAIL_ROOT_URL = 'https://gmail.googleapis.com/';
/** The only scope imports need: it cannot read a mailbox. */
export const GMAIL_INSERT_SCOPE = 'https://www.googleapis.com/auth/gmail.insert';
/**
 * users.messages.list with a `q` search needs gmail.readonly (gmail.metadata
 * rejects `q`). Only alreadyDelivered uses it; without that delegation it
 * answers false ("cannot tell"), as SMTP does.
 */
export const GMAIL_READONLY_SCOPE = 'https://www.googleapis.com/auth/gmail.readonly';
/** Imports with an unknown outcome remembered for a duplicate check before the next attempt. */
const MAX_UNCERTAIN = 100_000;
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
  backoff?: PacingOptions['backoff'];
}

export interface GmailTransport extends Transport {
  /** Fetches an access token for `user` (BackupReachable condition); never throws. */
  checkBackupReachable(user: string): Promise<BackupReachability>;
}

type ImportOutcome =
  | { ok: true; id: string }
  | { ok: false; kind: 'deferred' | 'failed'; detail: string; retryAfterMs?: number };

/** The Gmail API's root URL and the token URL, refused unless Google's own or loopback (the emulator). */
function endpoints(config: RelayConfig): { rootUrl: string; tokenUrl: string | undefined } {
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
  return { rootUrl, tokenUrl };
}

export class GmailApiTransport implements GmailTransport {
  readonly destination = 'backup' as const;
  private readonly spec: RelayConfig['spec']['backup']['gmail'];
  private readonly rootUrl: string;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly pacing: MailboxPacing;
  private readonly clients: ServiceAccountClients;
  private readonly keyFile: string | undefined;
  private readonly concurrency: number;
  private readonly timeoutBase: number;
  private readonly minBytesPerSecond: number;
  private readonly gmail: gmail_v1.Gmail;
  private readonly agents = new KeepAliveAgents(MAX_WINDOW);
  private readonly importWindow: ImportWindow;
  private readonly warnedNoDedupScope = new Set<string>();
  /** "<spool id> <mailbox>" of imports whose outcome is unknown (no answer, or 5xx). */
  private readonly uncertain = new Set<string>();
  private closed = false;

  constructor(config: RelayConfig, deps: GmailTransportDeps) {
    this.spec = config.spec.backup.gmail;
    if (this.spec.method !== 'GmailApi') {
      throw new Error(`spec.backup.gmail.method is ${this.spec.method}: the Gmail API transport needs method GmailApi`);
    }
    const { rootUrl, tokenUrl } = endpoints(config);
    this.rootUrl = rootUrl;
    const key = readServiceAccount(config.paths.gmailServiceAccount);
    this.keyFile = config.paths.gmailServiceAccount;
    this.log = deps.log.child({ component: 'gmail', serviceAccount: key.client_email });
    this.now = deps.now ?? Date.now;
    this.pacing = new MailboxPacing({
      ...deps.pacing,
      ...(deps.backoff ? { backoff: deps.backoff } : {}),
      now: this.now,
    });
    this.concurrency = Math.max(1, deps.concurrency ?? 4);
    this.timeoutBase = deps.timeouts?.baseMs ?? 60_000;
    this.minBytesPerSecond = deps.timeouts?.minBytesPerSecond ?? 256 * 1024;
    this.clients = new ServiceAccountClients(key, tokenUrl, this.timeoutBase, (url) => this.agents.for(url));
    this.gmail = gmailApi({ version: 'v1', rootUrl, retry: false });
    this.importWindow = new ImportWindow({
      targetPerSecond: targetImportsPerSecond(1),
      min: config.tuning.backupConcurrency,
    });
  }

  /** Deliveries to have in flight: Google's measured latency times this relay's share of the project quota (window.ts). */
  window(): number {
    return this.importWindow.size;
  }

  /** Quota units per mailbox per minute this relay spends now. */
  mailboxQuota(): number {
    return this.pacing.unitsPerMinute;
  }

  /** This relay's share of each mailbox's quota (the operator splits it across the replicas). */
  setMailboxQuota(unitsPerMinute: number): void {
    this.pacing.setUnitsPerMinute(unitsPerMinute);
    // The same share of the project's quota: the relay config has no replica count (scaling
    // must not restart the relays), the operator's share is what tells it how many share Google.
    this.importWindow.setTarget(targetImportsPerSecond(GMAIL_MAILBOX_UNITS_PER_MINUTE / this.pacing.unitsPerMinute));
  }

  async deliver(message: SpooledMessage, recipients: string[], signal?: AbortSignal): Promise<RecipientOutcome[]> {
    if (this.closed) {
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
      const box = this.mailboxOf(r);
      byMailbox.set(box, [...(byMailbox.get(box) ?? []), r]);
    }
    const boxes = [...byMailbox.keys()];
    const results = new Array<ImportOutcome>(boxes.length);
    await forEachLimit(boxes, this.concurrency, async (box, i) => {
      results[i] = signal?.aborted
        ? { ok: false, kind: 'deferred', detail: 'delivery aborted' }
        : await this.importInto(message, size, box, signal);
    });
    const outcomes = new Map<string, RecipientOutcome>();
    boxes.forEach((box, i) => {
      const r = results[i]!;
      for (const recipient of byMailbox.get(box)!) outcomes.set(recipient, outcomeOf(recipient, r));
    });
    return recipients.map((r) => outcomes.get(r)!);
  }

  async alreadyDelivered(message: SpooledMessage, recipient: string): Promise<boolean> {
    if (!message.messageId) return false;
    const mailbox = this.mailboxOf(recipient);
    try {
      return ((await this.findByMessageId(mailbox, message.messageId)) ?? null) !== null;
    } catch (err) {
      throw new Error(`alreadyDelivered(${mailbox}): ${classifyGoogleError(err, mailbox, this.now()).detail}`, {
        cause: err,
      });
    }
  }

  async checkBackupReachable(user: string): Promise<BackupReachability> {
    const mailbox = this.mailboxOf(user);
    try {
      await this.clients.get(mailbox, GMAIL_INSERT_SCOPE).getAccessToken();
      return { reachable: true, reason: 'TokenGranted', message: `Google granted an access token for ${mailbox}` };
    } catch (err) {
      return unreachableBecause(err, mailbox, this.now());
    }
  }

  /** The service account key file changed: read it again (throws, keeping the old key, when it is not a key). */
  async reloadSecrets(): Promise<void> {
    this.clients.setKey(readServiceAccount(this.keyFile));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.clients.clear();
    this.pacing.clear();
    this.agents.destroy();
  }

  /** The Workspace mailbox for a recipient, normalised (Gmail addresses are case-insensitive). */
  private mailboxOf(recipient: string): string {
    return mapAddress(this.spec.addressMap, recipient).toLowerCase();
  }

  private async importInto(
    message: SpooledMessage,
    size: number,
    mailbox: string,
    signal?: AbortSignal,
  ): Promise<ImportOutcome> {
    const wait = this.pacing.admitImport(mailbox);
    if (wait) return { ok: false, kind: 'deferred', ...wait };
    // An earlier attempt ended without an answer (timeout, dropped connection,
    // 5xx): Gmail may have stored the message. Look before importing again.
    const attempt = `${message.id} ${mailbox}`;
    if (this.uncertain.has(attempt) && message.messageId) {
      try {
        const found = await this.findByMessageId(mailbox, message.messageId);
        if (found) {
          this.uncertain.delete(attempt);
          this.pacing.succeeded(mailbox);
          this.log.info({ spoolId: message.id, mailbox, gmailId: found }, 'an earlier import had reached Gmail');
          return { ok: true, id: found };
        }
      } catch (err) {
        const f = classifyGoogleError(err, mailbox, this.now());
        return {
          ok: false,
          kind: 'deferred',
          detail: `duplicate check: ${f.detail}`,
          retryAfterMs: this.pacing.failed(mailbox, f.retryAfterMs),
        };
      }
    }
    const body = message.body ? Readable.from([message.body]) : messageFileStream(message);
    try {
      const labelIds = this.spec.labelIds;
      const params: gmail_v1.Params$Resource$Users$Messages$Import = {
        userId: mailbox,
        internalDateSource: 'dateHeader',
        neverMarkSpam: this.spec.neverMarkSpam,
        processForCalendar: this.spec.processForCalendar,
        media: { mimeType: 'message/rfc822', body },
        // The JWT class of google-auth-library and the one googleapis-common was
        // built against are the same code in two versions; the client only calls request().
        auth: this.clients.get(
          mailbox,
          GMAIL_INSERT_SCOPE,
        ) as unknown as gmail_v1.Params$Resource$Users$Messages$Import['auth'],
        ...(labelIds.length > 0 ? { requestBody: { labelIds } } : {}),
      };
      const started = this.now();
      const res = await this.gmail.users.messages.import(params, {
        rootUrl: this.rootUrl,
        retry: false,
        timeout: this.timeoutBase + Math.ceil((size * 1000) / this.minBytesPerSecond),
        agent: this.agents.for(this.rootUrl),
        ...(signal ? { signal } : {}),
      });
      this.importWindow.observe(this.now() - started);
      this.pacing.succeeded(mailbox);
      this.uncertain.delete(attempt);
      const id = res.data.id ?? '';
      this.log.info({ spoolId: message.id, mailbox, gmailId: id, labelIds: res.data.labelIds }, 'imported into Gmail');
      return { ok: true, id };
    } catch (err) {
      return this.importFailed(err, message, mailbox, attempt);
    } finally {
      body.destroy();
    }
  }

  private importFailed(err: unknown, message: SpooledMessage, mailbox: string, attempt: string): ImportOutcome {
    const f = classifyGoogleError(err, mailbox, this.now());
    if (f.authRejected) this.clients.drop(mailbox, GMAIL_INSERT_SCOPE);
    if (f.kind === 'failed') {
      this.uncertain.delete(attempt);
      this.log.warn({ spoolId: message.id, mailbox, detail: f.detail }, 'Gmail refused the message');
      return { ok: false, kind: 'failed', detail: f.detail };
    }
    if (!f.rateLimited && !f.authRejected && !f.tokenError) {
      if (this.uncertain.size >= MAX_UNCERTAIN) this.uncertain.delete(this.uncertain.values().next().value!);
      this.uncertain.add(attempt);
    }
    const retryAfterMs = this.pacing.failed(mailbox, f.retryAfterMs);
    if (f.rateLimited) this.pacing.pause(mailbox, retryAfterMs);
    this.log.warn({ spoolId: message.id, mailbox, detail: f.detail, retryAfterMs }, 'Gmail import deferred');
    return { ok: false, kind: 'deferred', detail: f.detail, retryAfterMs };
  }

  /**
   * The Gmail id of a message with this Message-ID in the mailbox; null when
   * there is none; undefined when the service account may not search (no
   * gmail.readonly delegation) or the ID cannot be searched safely (dedup-query.ts). Other errors throw.
   */
  private async findByMessageId(mailbox: string, messageId: string): Promise<string | null | undefined> {
    const q = dedupQuery(messageId);
    if (q === undefined) return undefined;
    this.pacing.chargeList(mailbox);
    try {
      const res = await this.gmail.users.messages.list(
        {
          userId: mailbox,
          q,
          includeSpamTrash: true,
          maxResults: 1,
          auth: this.clients.get(
            mailbox,
            GMAIL_READONLY_SCOPE,
          ) as unknown as gmail_v1.Params$Resource$Users$Messages$List['auth'],
        },
        { rootUrl: this.rootUrl, retry: false, timeout: this.timeoutBase, agent: this.agents.for(this.rootUrl) },
      );
      return res.data.messages?.[0]?.id ?? null;
    } catch (err) {
      if (oauthErrorOf(err) === 'unauthorized_client') {
        if (!this.warnedNoDedupScope.has(mailbox)) {
          this.warnedNoDedupScope.add(mailbox);
          this.log.warn(
            { mailbox },
            'cannot search Gmail for duplicates: the service account has no domain-wide delegation for gmail.readonly; a message in flight during a crash may be imported twice',
          );
        }
        return undefined;
      }
      throw err;
    }
  }
}

function outcomeOf(recipient: string, r: ImportOutcome): RecipientOutcome {
  if (r.ok) return { recipient, status: 'delivered', detail: r.id };
  if (r.kind === 'failed') return { recipient, status: 'failed', detail: r.detail };
  return {
    recipient,
    status: 'deferred',
    detail: r.detail,
    ...(r.retryAfterMs !== undefined ? { retryAfterMs: r.retryAfterMs } : {}),
  };
}

export function createGmailTransport(config: RelayConfig, deps: GmailTransportDeps): GmailTransport {
  return new GmailApiTransport(config, deps);
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
