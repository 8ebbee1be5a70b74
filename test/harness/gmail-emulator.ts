// A strict emulator of Google's OAuth2 token endpoint (JWT bearer grant with
// domain-wide delegation) and the subset of the Gmail API the relay uses:
// users.messages.import (media and multipart upload, and the plain JSON `raw`
// form) and users.messages.list with a search query (gmail-query.ts: the part
// of Gmail's syntax that matters to an rfc822msgid: query, unescaped text included).
//
// It checks what Google checks, answers in Google's error shapes, charges
// Gmail's quota units per user, answers after a configurable latency (Google
// takes hundreds of ms per import: latencyMs), and can inject faults (5xx,
// 429 storms, dropped connections). It listens on loopback only; the real googleapis
// client and google-auth-library are pointed at it (rootUrl, token URL).
import { createPublicKey, generateKeyPairSync, randomBytes, verify, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { matches as matchesQuery, parseQuery, QueryError } from './gmail-query.js';

export const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
/** Audiences Google's token endpoint accepts in a JWT grant. */
const GOOGLE_AUDIENCES = [
  GOOGLE_TOKEN_URL,
  'https://www.googleapis.com/oauth2/v4/token',
  'https://accounts.google.com/o/oauth2/token',
];
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

export const SCOPES = {
  insert: 'https://www.googleapis.com/auth/gmail.insert',
  modify: 'https://www.googleapis.com/auth/gmail.modify',
  readonly: 'https://www.googleapis.com/auth/gmail.readonly',
  metadata: 'https://www.googleapis.com/auth/gmail.metadata',
  full: 'https://mail.google.com/',
} as const;
const IMPORT_SCOPES: string[] = [SCOPES.insert, SCOPES.modify, SCOPES.full];
const LIST_SCOPES: string[] = [SCOPES.readonly, SCOPES.modify, SCOPES.full, SCOPES.metadata];

/** Gmail's documented quota costs and the per-user limit. */
export const UNITS = { import: 25, list: 5 } as const;
export const DEFAULT_QUOTA_PER_MINUTE = 15_000;
/** users.messages.import through /upload takes messages up to 150 MB. */
export const MAX_UPLOAD_BYTES = 150 * 1024 * 1024;
/** The non-upload form carries `raw` (base64url) in a JSON body; Google caps it lower. */
const MAX_METADATA_BYTES = 50 * 1024 * 1024;

const SYSTEM_LABELS = new Set([
  'INBOX',
  'UNREAD',
  'SPAM',
  'TRASH',
  'IMPORTANT',
  'STARRED',
  'SENT',
  'DRAFT',
  'CHAT',
  'CATEGORY_PERSONAL',
  'CATEGORY_SOCIAL',
  'CATEGORY_PROMOTIONS',
  'CATEGORY_UPDATES',
  'CATEGORY_FORUMS',
]);

/** A service account JSON key, exactly as the Google Cloud console downloads it. */
export interface ServiceAccountKey {
  type: 'service_account';
  project_id: string;
  private_key_id: string;
  private_key: string;
  client_email: string;
  client_id: string;
  auth_uri: string;
  token_uri: string;
  auth_provider_x509_cert_url: string;
  client_x509_cert_url: string;
  universe_domain: string;
}

export interface ServiceAccount {
  key: ServiceAccountKey;
  /** JSON text of `key`, ready to write to a file. */
  keyJson: string;
  /** Scopes the Workspace admin granted this client for domain-wide delegation. */
  delegatedScopes: string[];
}

export interface StoredMessage {
  id: string;
  threadId: string;
  raw: Buffer;
  labelIds: string[];
  internalDateSource: 'receivedTime' | 'dateHeader';
  /** Epoch milliseconds Gmail shows as the message date. */
  internalDate: number;
  neverMarkSpam: boolean;
  processForCalendar: boolean;
  deleted: boolean;
  /** Message-ID header without angle brackets. */
  rfc822MessageId?: string;
  /** 'multipart', 'media' or 'json' (the non-upload form). */
  uploadType: string;
  /** Epoch ms at which the emulator stored it (the import's arrival, whatever internalDate says). */
  storedAt: number;
}

export interface RequestRecord {
  method: string;
  path: string;
  status: number;
  /** The mailbox the request acted for (token subject), when known. */
  user?: string;
}

export interface GmailEmulatorOptions {
  /** Workspace mailboxes that exist (domain-wide delegation subjects). */
  users?: string[];
  host?: string;
  port?: number;
  /** Per-user quota in units per minute (Gmail: 15,000). */
  quotaPerMinute?: number;
  /** Scopes granted to the default service account (default: gmail.insert and gmail.readonly). */
  delegatedScopes?: string[];
  /** Clock, epoch ms (default Date.now). */
  now?: () => number;
  /** Delay before every answer (token and Gmail API), fixed or uniform in [min, max]: Google takes hundreds of ms per import. */
  latencyMs?: Latency;
}

/** A fixed delay, or one drawn uniformly from [min, max] for each answer (ms). */
export type Latency = number | { min: number; max: number };

export interface GmailEmulator {
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  /** The emulator's own token endpoint (the relay rewrites Google's to this). */
  tokenUrl: string;
  /** For googleapis `rootUrl`: ends in '/'. */
  rootUrl: string;
  /** The Workspace mailboxes that exist (lower case). */
  users: Set<string>;
  /** The service account created at start. */
  serviceAccount: ServiceAccount;
  addUser(email: string): void;
  addServiceAccount(opts?: { delegatedScopes?: string[]; name?: string }): ServiceAccount;
  /**
   * Deletes a key of a service account (default: the one created at start) as the Cloud console
   * does: grants signed with it get invalid_grant "Invalid JWT Signature."; tokens issued stay valid.
   */
  revokeKey(clientEmail?: string, keyId?: string): void;
  /** Creates a user label and returns its id (Label_<n>). */
  createLabel(user: string, name: string): string;
  /** Messages imported into a mailbox, in import order. */
  messages(user: string): StoredMessage[];
  /** Units per user per minute; may be changed at any time. */
  quotaPerMinute: number;
  /** Delay before every answer; may be changed at any time (0: none). */
  latencyMs: Latency;
  /** TCP connections accepted so far (how well clients reuse them). */
  connections(): number;
  /** The next `n` Gmail API requests fail with `status` (500 or 503) in Google's shape. */
  failNext(n: number, status?: number): void;
  /** The next `n` token requests fail with `status` (500 or 503) in the token endpoint's shape. */
  failTokenNext(n: number, status?: number): void;
  /** The next `n` Gmail API requests have their connection destroyed without an answer. */
  dropNext(n: number): void;
  /** The next `n` imports are stored, then answered with `status` (the client cannot tell they worked). */
  failAfterImportNext(n: number, status?: number): void;
  /** The next `n` Gmail API requests are read but never answered (until close). */
  stallNext(n: number): void;
  /** For `ms` from now, every Gmail API request gets a 429 whose message says when to retry. */
  rateLimitStorm(ms: number): void;
  /** Every request the emulator answered (token and Gmail API). */
  requests: RequestRecord[];
  /** Access tokens issued so far, by subject. */
  tokensIssued(sub?: string): number;
  close(): Promise<void>;
}

interface KeyEntry {
  publicKey: KeyObject;
}
interface AccountEntry extends ServiceAccount {
  keys: Map<string, KeyEntry>;
}
interface TokenEntry {
  sub: string | undefined;
  clientEmail: string;
  scopes: string[];
  expiresAt: number;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
  ) {
    super(typeof body === 'string' ? body : JSON.stringify(body));
  }
}

const GOOGLE_STATUS: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  413: 'INVALID_ARGUMENT',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
};

/** An error in the shape of Google's JSON APIs (Gmail). */
function apiError(
  status: number,
  message: string,
  reason: string,
  domain = 'global',
  extra: Record<string, string> = {},
): HttpError {
  return new HttpError(status, {
    error: {
      code: status,
      message,
      errors: [{ message, domain, reason, ...extra }],
      status: GOOGLE_STATUS[status] ?? 'UNKNOWN',
    },
  });
}

/** An error in the shape of Google's OAuth2 token endpoint. */
function oauthError(status: number, error: string, description: string): HttpError {
  return new HttpError(status, { error, error_description: description });
}

const unauthenticated = () =>
  new HttpError(
    401,
    {
      error: {
        code: 401,
        message:
          'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.',
        errors: [
          {
            message: 'Invalid Credentials',
            domain: 'global',
            reason: 'authError',
            location: 'Authorization',
            locationType: 'header',
          },
        ],
        status: 'UNAUTHENTICATED',
      },
    },
    { 'www-authenticate': 'Bearer realm="https://accounts.google.com/", error="invalid_token"' },
  );

const insufficientScopes = () =>
  new HttpError(403, {
    error: {
      code: 403,
      message: 'Request had insufficient authentication scopes.',
      errors: [{ message: 'Insufficient Permission', domain: 'global', reason: 'insufficientPermissions' }],
      status: 'PERMISSION_DENIED',
      details: [
        {
          '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
          reason: 'ACCESS_TOKEN_SCOPE_INSUFFICIENT',
          domain: 'googleapis.com',
          metadata: { service: 'gmail.googleapis.com', method: 'caribou.api.proto.MailboxService.ImportMessage' },
        },
      ],
    },
  });

function b64urlJson(part: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function randomDigits(n: number): string {
  let s = String(1 + (randomBytes(1)[0]! % 9));
  while (s.length < n) s += String(randomBytes(1)[0]! % 10);
  return s;
}

/** Header fields of an RFC 5322 message, or a reason it is not one. */
export function parseRfc5322Headers(raw: Buffer): { fields: [string, string][] } | { error: string } {
  // The header section ends at the first empty line (or at the end of a body-less message).
  const text = raw.subarray(0, Math.min(raw.length, 1024 * 1024)).toString('latin1');
  let end = text.search(/\r?\n\r?\n/);
  if (end < 0) {
    if (raw.length > 1024 * 1024) return { error: 'header section longer than 1 MiB' };
    end = text.length;
  }
  const head = text.slice(0, end);
  if (head.trim() === '') return { error: 'the message has no header fields' };
  const fields: [string, string][] = [];
  for (const line of head.split(/\r?\n/)) {
    if (/^[ \t]/.test(line)) {
      const last = fields.at(-1);
      if (!last) return { error: 'the message starts with a folded line' };
      last[1] += ' ' + line.trim();
      continue;
    }
    const m = /^([!-9;-~]+):(.*)$/.exec(line);
    if (!m) return { error: `not a header field: ${JSON.stringify(line.slice(0, 60))}` };
    fields.push([m[1]!, m[2]!.trim()]);
  }
  return { fields };
}

interface Part {
  headers: Map<string, string>;
  body: Buffer;
}

/** Parses a multipart/related body strictly (RFC 2046 delimiters, CRLF line ends). */
function parseMultipart(body: Buffer, boundary: string): Part[] | string {
  const first = Buffer.from(`--${boundary}`);
  const delim = Buffer.from(`\r\n--${boundary}`);
  let pos: number;
  if (body.subarray(0, first.length).equals(first)) pos = first.length;
  else {
    const at = body.indexOf(delim);
    if (at < 0) return 'no multipart boundary delimiter found in the body';
    pos = at + delim.length;
  }
  const parts: Part[] = [];
  for (;;) {
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) return parts; // close delimiter
    while (body[pos] === 0x20 || body[pos] === 0x09) pos++; // transport padding
    if (body[pos] !== 0x0d || body[pos + 1] !== 0x0a) return 'a multipart delimiter is not followed by CRLF';
    pos += 2;
    const next = body.indexOf(delim, pos);
    if (next < 0) return 'the multipart body has no closing delimiter';
    const raw = body.subarray(pos, next);
    let headerEnd: number;
    let bodyStart: number;
    if (raw[0] === 0x0d && raw[1] === 0x0a) {
      headerEnd = 0;
      bodyStart = 2;
    } else {
      headerEnd = raw.indexOf('\r\n\r\n');
      if (headerEnd < 0) return 'a multipart part has no blank line after its headers';
      bodyStart = headerEnd + 4;
    }
    const headerText = raw.subarray(0, headerEnd);
    const headers = new Map<string, string>();
    for (const line of headerText.toString('latin1').split('\r\n')) {
      if (line === '') continue;
      const m = /^([!-9;-~]+):\s*(.*)$/.exec(line);
      if (!m) return `bad part header ${JSON.stringify(line.slice(0, 60))}`;
      headers.set(m[1]!.toLowerCase(), m[2]!.trim());
    }
    parts.push({ headers, body: raw.subarray(bodyStart) });
    pos = next + delim.length;
  }
}

function mediaTypeOf(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

function boundaryOf(contentType: string): string | undefined {
  const m = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return m ? (m[1] ?? m[2]) : undefined;
}

function boolParam(q: URLSearchParams, name: string, snake: string): boolean {
  const v = q.get(name);
  if (v === null) return false;
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw apiError(400, `Invalid value at '${snake}' (TYPE_BOOL), "${v}"`, 'invalid', 'global');
}

export async function startGmailEmulator(opts: GmailEmulatorOptions = {}): Promise<GmailEmulator> {
  const now = opts.now ?? Date.now;
  const users = new Set((opts.users ?? []).map((u) => u.toLowerCase()));
  const accounts = new Map<string, AccountEntry>();
  const tokens = new Map<string, TokenEntry>();
  const mailboxes = new Map<string, StoredMessage[]>();
  const labels = new Map<string, Map<string, string>>(); // user -> id -> name
  const usage = new Map<string, { at: number; units: number }[]>();
  const requests: RequestRecord[] = [];
  const issued = new Map<string, number>();
  const sockets = new Set<Socket>();
  let nextId = BigInt('0x18c2a5f3e0000000') + BigInt(randomBytes(2).readUInt16BE(0)) * 0x10000n;
  let nextLabel = 1;
  let failures: { n: number; status: number } = { n: 0, status: 503 };
  let tokenFailures: { n: number; status: number } = { n: 0, status: 503 };
  let drops = 0;
  let afterImport: { n: number; status: number } = { n: 0, status: 503 };
  let stalls = 0;
  let stormUntil = 0;

  const emulator = {
    url: '',
    tokenUrl: '',
    rootUrl: '',
    users,
    quotaPerMinute: opts.quotaPerMinute ?? DEFAULT_QUOTA_PER_MINUTE,
    latencyMs: opts.latencyMs ?? 0,
    requests,
  } as GmailEmulator;

  // ---- OAuth2 token endpoint -------------------------------------------------------------

  function issueToken(form: URLSearchParams): Record<string, unknown> {
    const grantType = form.get('grant_type');
    if (grantType !== JWT_BEARER) {
      throw oauthError(400, 'unsupported_grant_type', `Invalid grant_type: ${grantType ?? ''}`);
    }
    const assertion = form.get('assertion') ?? '';
    const segments = assertion.split('.');
    if (segments.length !== 3) throw oauthError(400, 'invalid_grant', 'Invalid JWT: malformed assertion.');
    const [h, p, s] = segments as [string, string, string];
    const header = b64urlJson(h);
    const claims = b64urlJson(p);
    if (!header || !claims) throw oauthError(400, 'invalid_grant', 'Invalid JWT: malformed assertion.');
    if (header.alg !== 'RS256') throw oauthError(400, 'invalid_grant', 'Invalid JWT Signature.');
    const iss = typeof claims.iss === 'string' ? claims.iss : '';
    const account = accounts.get(iss);
    if (!account) throw oauthError(400, 'invalid_grant', 'Invalid grant: account not found');
    let candidates: KeyEntry[];
    if (header.kid !== undefined) {
      const k = typeof header.kid === 'string' ? account.keys.get(header.kid) : undefined;
      if (!k) throw oauthError(400, 'invalid_grant', 'Invalid JWT Signature.');
      candidates = [k];
    } else {
      candidates = [...account.keys.values()];
    }
    const signed = Buffer.from(`${h}.${p}`);
    const signature = Buffer.from(s, 'base64url');
    if (!candidates.some((k) => verify('RSA-SHA256', signed, k.publicKey, signature))) {
      throw oauthError(400, 'invalid_grant', 'Invalid JWT Signature.');
    }
    if (claims.aud !== emulator.tokenUrl && !GOOGLE_AUDIENCES.includes(String(claims.aud))) {
      throw oauthError(400, 'invalid_grant', 'Invalid JWT: Failed audience check.');
    }
    const iat = claims.iat;
    const exp = claims.exp;
    const nowSec = Math.floor(now() / 1000);
    if (
      typeof iat !== 'number' ||
      typeof exp !== 'number' ||
      exp <= iat ||
      exp - iat > 3600 ||
      exp <= nowSec ||
      iat > nowSec + 300
    ) {
      throw oauthError(
        400,
        'invalid_grant',
        'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.',
      );
    }
    const scopes = typeof claims.scope === 'string' ? claims.scope.split(/\s+/).filter(Boolean) : [];
    if (scopes.length === 0)
      throw oauthError(400, 'invalid_scope', 'Invalid OAuth scope or ID token audience provided.');
    let sub: string | undefined;
    if (claims.sub !== undefined) {
      sub = typeof claims.sub === 'string' ? claims.sub.toLowerCase() : '';
      if (!users.has(sub)) throw oauthError(400, 'invalid_grant', 'Invalid email or User ID');
      if (!scopes.every((sc) => account.delegatedScopes.includes(sc))) {
        throw oauthError(
          401,
          'unauthorized_client',
          'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.',
        );
      }
    }
    const token = `ya29.emu-${randomBytes(36).toString('base64url')}`;
    tokens.set(token, { sub, clientEmail: iss, scopes, expiresAt: now() + 3599_000 });
    issued.set(sub ?? iss, (issued.get(sub ?? iss) ?? 0) + 1);
    return { access_token: token, expires_in: 3599, token_type: 'Bearer' };
  }

  // ---- Gmail API ----------------------------------------------------------------------------

  function authenticate(req: IncomingMessage, allowed: string[], userId: string): { token: TokenEntry; user: string } {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    const token = m ? tokens.get(m[1]!) : undefined;
    if (!token || token.expiresAt <= now()) throw unauthenticated();
    if (!token.scopes.some((s) => allowed.includes(s))) throw insufficientScopes();
    if (!token.sub) throw apiError(400, 'Precondition check failed.', 'failedPrecondition');
    const wanted = userId === 'me' ? token.sub : userId.toLowerCase();
    if (wanted !== token.sub) throw apiError(403, `Delegation denied for ${token.sub}`, 'forbidden');
    return { token, user: token.sub };
  }

  /** Charges `units` against the user's sliding one-minute window, or throws Gmail's 429. */
  function charge(user: string, units: number): void {
    const t = now();
    if (t < stormUntil) throw rateLimited(stormUntil);
    const window = (usage.get(user) ?? []).filter((u) => u.at > t - 60_000);
    usage.set(user, window);
    const used = window.reduce((a, u) => a + u.units, 0);
    if (used + units > emulator.quotaPerMinute) {
      // Retry when enough of the window has expired to fit this request.
      let free = emulator.quotaPerMinute - used;
      let retryAt = t + 60_000;
      for (const u of window) {
        free += u.units;
        if (free >= units) {
          retryAt = u.at + 60_000;
          break;
        }
      }
      throw rateLimited(retryAt);
    }
    window.push({ at: t, units });
  }

  function rateLimited(retryAt: number): HttpError {
    const message = `User-rate limit exceeded.  Retry after ${new Date(retryAt).toISOString()}`;
    return new HttpError(429, {
      error: {
        code: 429,
        message,
        errors: [{ message, domain: 'usageLimits', reason: 'rateLimitExceeded' }],
        status: 'RESOURCE_EXHAUSTED',
      },
    });
  }

  function validateLabels(user: string, ids: unknown): string[] {
    if (ids === undefined) return [];
    if (!Array.isArray(ids) || !ids.every((x) => typeof x === 'string')) {
      throw apiError(400, "Invalid JSON payload received. Invalid value at 'message.label_ids'", 'invalid');
    }
    const own = labels.get(user) ?? new Map<string, string>();
    for (const id of ids as string[]) {
      if (!SYSTEM_LABELS.has(id) && !own.has(id)) throw apiError(400, `Invalid label: ${id}`, 'invalidArgument');
    }
    return [...new Set(ids as string[])];
  }

  function store(
    user: string,
    raw: Buffer,
    meta: Record<string, unknown>,
    q: URLSearchParams,
    uploadType: string,
  ): StoredMessage {
    if (raw.length > MAX_UPLOAD_BYTES) {
      throw apiError(413, `Request payload size exceeds the limit: ${MAX_UPLOAD_BYTES} bytes.`, 'uploadTooLarge');
    }
    const source = q.get('internalDateSource') ?? 'receivedTime';
    if (source !== 'receivedTime' && source !== 'dateHeader') {
      throw apiError(
        400,
        `Invalid value at 'internal_date_source' (type.googleapis.com/gmail.InternalDateSource), "${source}"`,
        'invalid',
      );
    }
    const neverMarkSpam = boolParam(q, 'neverMarkSpam', 'never_mark_spam');
    const processForCalendar = boolParam(q, 'processForCalendar', 'process_for_calendar');
    const deleted = boolParam(q, 'deleted', 'deleted');
    const labelIds = validateLabels(user, meta.labelIds);
    if (raw.length === 0)
      throw apiError(
        400,
        "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
        'invalidArgument',
      );
    const parsed = parseRfc5322Headers(raw);
    if ('error' in parsed) throw apiError(400, `Invalid RFC 5322 message: ${parsed.error}`, 'invalidArgument');
    const header = (name: string) => parsed.fields.find(([k]) => k.toLowerCase() === name)?.[1];
    const msgId = header('message-id')?.replace(/^\s*<|>\s*$/g, '');
    let internalDate = now();
    if (source === 'dateHeader') {
      const d = Date.parse(header('date') ?? '');
      if (!Number.isNaN(d)) internalDate = d;
    }
    const box = mailboxes.get(user) ?? [];
    mailboxes.set(user, box);
    const id = (nextId++).toString(16);
    const threadId =
      typeof meta.threadId === 'string' && box.some((m) => m.threadId === meta.threadId) ? meta.threadId : id;
    const msg: StoredMessage = {
      id,
      threadId,
      raw: Buffer.from(raw),
      labelIds,
      internalDateSource: source,
      internalDate,
      neverMarkSpam,
      processForCalendar,
      deleted,
      uploadType,
      storedAt: now(),
      ...(msgId ? { rfc822MessageId: msgId } : {}),
    };
    box.push(msg);
    return msg;
  }

  async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > limit) {
        throw apiError(413, `Request payload size exceeds the limit: ${MAX_UPLOAD_BYTES} bytes.`, 'uploadTooLarge');
      }
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }

  async function handleImport(req: IncomingMessage, url: URL, userId: string, upload: boolean): Promise<unknown> {
    const { user } = authenticate(req, IMPORT_SCOPES, userId);
    const q = url.searchParams;
    const contentType = req.headers['content-type'] ?? '';
    let raw: Buffer;
    let meta: Record<string, unknown> = {};
    let uploadType: string;
    if (upload) {
      uploadType = q.get('uploadType') ?? '';
      const body = await readBody(req, MAX_UPLOAD_BYTES + 1024 * 1024);
      if (uploadType === 'media') {
        const type = mediaTypeOf(contentType);
        if (!type.startsWith('message/')) {
          throw apiError(400, `Media type '${type}' is not supported. Valid media types: [message/*]`, 'badContent');
        }
        raw = body;
      } else if (uploadType === 'multipart') {
        if (mediaTypeOf(contentType) !== 'multipart/related') {
          throw apiError(400, 'Multipart upload needs Content-Type multipart/related.', 'badRequest');
        }
        const boundary = boundaryOf(contentType);
        if (!boundary) throw apiError(400, 'Malformed multipart body: no boundary.', 'badRequest');
        const parts = parseMultipart(body, boundary);
        if (typeof parts === 'string') throw apiError(400, `Malformed multipart body: ${parts}.`, 'badRequest');
        if (parts.length !== 2) {
          throw apiError(
            400,
            `Malformed multipart body: expected 2 parts (metadata, media), got ${parts.length}.`,
            'badRequest',
          );
        }
        const [metaPart, mediaPart] = parts as [Part, Part];
        if (mediaTypeOf(metaPart.headers.get('content-type')) !== 'application/json') {
          throw apiError(
            400,
            'Malformed multipart body: the first part must be application/json metadata.',
            'badRequest',
          );
        }
        try {
          const m: unknown = JSON.parse(metaPart.body.toString('utf8'));
          if (m === null || typeof m !== 'object' || Array.isArray(m)) throw new Error('not an object');
          meta = m as Record<string, unknown>;
        } catch {
          throw apiError(400, 'Invalid JSON payload received in the metadata part.', 'parseError');
        }
        const type = mediaTypeOf(mediaPart.headers.get('content-type'));
        if (!type.startsWith('message/')) {
          throw apiError(400, `Media type '${type}' is not supported. Valid media types: [message/*]`, 'badContent');
        }
        raw = mediaPart.body;
      } else if (uploadType === 'resumable') {
        throw apiError(400, 'The emulator does not implement resumable uploads.', 'badRequest');
      } else {
        throw apiError(400, `Invalid upload type: "${uploadType}". Use media or multipart.`, 'invalid');
      }
    } else {
      uploadType = 'json';
      if (mediaTypeOf(contentType) !== 'application/json') {
        throw apiError(
          400,
          "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
          'invalidArgument',
        );
      }
      const body = await readBody(req, MAX_METADATA_BYTES);
      try {
        meta = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      } catch {
        throw apiError(400, 'Invalid JSON payload received.', 'parseError');
      }
      if (typeof meta.raw !== 'string') {
        throw apiError(
          400,
          "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
          'invalidArgument',
        );
      }
      raw = Buffer.from(meta.raw, 'base64url');
    }
    charge(user, UNITS.import);
    const msg = store(user, raw, meta, q, uploadType);
    if (afterImport.n > 0) {
      afterImport.n--;
      throw apiError(afterImport.status, 'The service is currently unavailable.', 'backendError');
    }
    return { id: msg.id, threadId: msg.threadId, labelIds: msg.labelIds };
  }

  function handleList(req: IncomingMessage, url: URL, userId: string): unknown {
    const { token, user } = authenticate(req, LIST_SCOPES, userId);
    const q = url.searchParams.get('q');
    if (q !== null && token.scopes.every((s) => s === SCOPES.metadata)) {
      throw apiError(403, "Metadata scope does not support 'q' parameter", 'forbidden');
    }
    const includeSpamTrash = boolParam(url.searchParams, 'includeSpamTrash', 'include_spam_trash');
    let query: ReturnType<typeof parseQuery> | undefined;
    if (q !== null && q.trim() !== '') {
      try {
        query = parseQuery(q);
      } catch (e) {
        throw apiError(400, `Invalid query ${JSON.stringify(q)}: ${(e as Error).message}`, 'invalidArgument');
      }
    }
    charge(user, UNITS.list);
    const found: StoredMessage[] = [];
    for (const m of mailboxes.get(user) ?? []) {
      if (m.deleted || (!includeSpamTrash && m.labelIds.some((l) => l === 'SPAM' || l === 'TRASH'))) continue;
      try {
        if (query === undefined || matchesQuery(query, m)) found.push(m);
      } catch (e) {
        if (e instanceof QueryError) throw apiError(400, e.message, 'invalidArgument');
        throw e;
      }
    }
    found.reverse(); // newest first, as Gmail lists
    return found.length === 0
      ? { resultSizeEstimate: 0 }
      : { messages: found.map((m) => ({ id: m.id, threadId: m.threadId })), resultSizeEstimate: found.length };
  }

  function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    const answer = () => {
      res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', ...headers });
      res.end(text);
    };
    const l = emulator.latencyMs;
    const delay = typeof l === 'number' ? l : l.min + Math.random() * (l.max - l.min);
    if (delay > 0) setTimeout(answer, delay);
    else answer();
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', emulator.url);
    const record: RequestRecord = { method: req.method ?? '', path: url.pathname, status: 0 };
    requests.push(record);
    try {
      if (url.pathname === '/token') {
        if (req.method !== 'POST') throw oauthError(405, 'invalid_request', 'Use POST.');
        if (tokenFailures.n > 0) {
          tokenFailures.n--;
          throw oauthError(tokenFailures.status, 'internal_failure', 'Backend error. Try again later.');
        }
        if (mediaTypeOf(req.headers['content-type']) !== 'application/x-www-form-urlencoded') {
          throw oauthError(400, 'invalid_request', 'Content-Type must be application/x-www-form-urlencoded.');
        }
        const form = new URLSearchParams((await readBody(req, 64 * 1024)).toString('utf8'));
        const body = issueToken(form);
        record.status = 200;
        send(res, 200, body, { 'cache-control': 'no-cache, no-store, max-age=0, must-revalidate' });
        return;
      }
      const m = /^\/(upload\/)?gmail\/v1\/users\/([^/]+)\/messages(\/import)?$/.exec(url.pathname);
      if (!m) throw apiError(404, `Not found: ${url.pathname}`, 'notFound');
      const userId = decodeURIComponent(m[2]!);
      const isImport = m[3] !== undefined;
      if (drops > 0) {
        drops--;
        record.status = -1;
        req.socket.destroy();
        return;
      }
      if (stalls > 0) {
        stalls--;
        record.status = -2;
        req.resume();
        return;
      }
      if (failures.n > 0) {
        failures.n--;
        const status = failures.status;
        throw status === 500
          ? apiError(500, 'Internal error encountered.', 'backendError')
          : apiError(status, 'The service is currently unavailable.', 'backendError');
      }
      let body: unknown;
      if (isImport && req.method === 'POST') body = await handleImport(req, url, userId, m[1] !== undefined);
      else if (!isImport && m[1] === undefined && req.method === 'GET') body = handleList(req, url, userId);
      else throw apiError(405, `Method ${req.method ?? ''} not allowed on ${url.pathname}`, 'httpMethodNotAllowed');
      const tokenSub = tokens.get(/^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '')?.sub;
      if (tokenSub) record.user = tokenSub;
      record.status = 200;
      send(res, 200, body);
    } catch (err) {
      const e =
        err instanceof HttpError ? err : apiError(500, `Internal error encountered: ${String(err)}`, 'backendError');
      record.status = e.status;
      const tokenSub = tokens.get(/^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '')?.sub;
      if (tokenSub) record.user = tokenSub;
      // Drain what the client still sends so it sees the answer rather than a reset.
      req.resume();
      if (!res.headersSent) send(res, e.status, e.body, e.headers);
    }
  }

  const server: Server = createServer((req, res) => {
    void handle(req, res);
  });
  let accepted = 0;
  server.on('connection', (s: Socket) => {
    accepted++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  emulator.url = `http://${host}:${addr.port}`;
  emulator.tokenUrl = `${emulator.url}/token`;
  emulator.rootUrl = `${emulator.url}/`;

  emulator.addUser = (email: string) => void users.add(email.toLowerCase());
  emulator.addServiceAccount = (o = {}) => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const project = 'mail-continuity-emu';
    const name = o.name ?? `relay-${randomBytes(3).toString('hex')}`;
    const clientEmail = `${name}@${project}.iam.gserviceaccount.com`;
    const keyId = randomBytes(20).toString('hex');
    const key: ServiceAccountKey = {
      type: 'service_account',
      project_id: project,
      private_key_id: keyId,
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      client_email: clientEmail,
      client_id: randomDigits(21),
      auth_uri: 'https://accounts.google.com/o/oauth2/auth',
      token_uri: GOOGLE_TOKEN_URL,
      auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
      client_x509_cert_url: `https://www.googleapis.com/robot/v1/metadata/x509/${encodeURIComponent(clientEmail)}`,
      universe_domain: 'googleapis.com',
    };
    const account: AccountEntry = {
      key,
      keyJson: JSON.stringify(key, null, 2) + '\n',
      delegatedScopes: o.delegatedScopes ?? opts.delegatedScopes ?? [SCOPES.insert, SCOPES.readonly],
      keys: new Map([[keyId, { publicKey: createPublicKey(publicKey.export({ type: 'spki', format: 'pem' })) }]]),
    };
    accounts.set(clientEmail, account);
    return { key: account.key, keyJson: account.keyJson, delegatedScopes: account.delegatedScopes };
  };
  emulator.revokeKey = (clientEmail = emulator.serviceAccount.key.client_email, keyId?: string) => {
    const account = accounts.get(clientEmail);
    if (!account) throw new Error(`revokeKey: no service account ${clientEmail}`);
    account.keys.delete(keyId ?? account.key.private_key_id);
  };
  emulator.createLabel = (user: string, name: string) => {
    const u = user.toLowerCase();
    const own = labels.get(u) ?? new Map<string, string>();
    labels.set(u, own);
    const id = `Label_${nextLabel++}`;
    own.set(id, name);
    return id;
  };
  emulator.messages = (user: string) => [...(mailboxes.get(user.toLowerCase()) ?? [])];
  emulator.failNext = (n: number, status = 503) => {
    failures = { n, status };
  };
  emulator.failTokenNext = (n: number, status = 503) => {
    tokenFailures = { n, status };
  };
  emulator.failAfterImportNext = (n: number, status = 503) => {
    afterImport = { n, status };
  };
  emulator.stallNext = (n: number) => {
    stalls = n;
  };
  emulator.dropNext = (n: number) => {
    drops = n;
  };
  emulator.rateLimitStorm = (ms: number) => {
    stormUntil = now() + ms;
  };
  emulator.connections = () => accepted;
  emulator.tokensIssued = (sub?: string) =>
    sub === undefined ? [...issued.values()].reduce((a, b) => a + b, 0) : (issued.get(sub.toLowerCase()) ?? 0);
  emulator.close = async () => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
  };
  emulator.serviceAccount = emulator.addServiceAccount({ name: 'mail-continuity-relay' });
  return emulator;
}
