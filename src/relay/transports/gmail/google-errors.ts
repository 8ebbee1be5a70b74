// What a failed call to Google means for the relay: google-auth-library's
// token errors and the Gmail API's errors mapped to delivered / deferred (with
// when to retry) / failed, quota answers and refused access tokens flagged.

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

export type BackupReachability =
  | { reachable: true; reason: 'TokenGranted'; message: string }
  | {
      reachable: false;
      reason: 'DelegationMissing' | 'UnknownUser' | 'KeyRejected' | 'Unreachable' | 'TokenError';
      message: string;
    };

const QUOTA_REASONS = new Set([
  'rateLimitExceeded',
  'userRateLimitExceeded',
  'dailyLimitExceeded',
  'quotaExceeded',
  'concurrentLimitExceeded',
]);

/** The parts of a gaxios / google-auth-library error read here. */
export interface ErrorLike {
  message?: unknown;
  code?: unknown;
  status?: unknown;
  response?: { status?: unknown; data?: unknown; headers?: unknown };
}

/** The OAuth2 error code of a token endpoint's answer ("unauthorized_client", "invalid_grant"), if any. */
export function oauthErrorOf(err: unknown): unknown {
  return ((err as ErrorLike).response?.data as { error?: unknown } | undefined)?.error;
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

/** Why no access token was granted, for the BackupReachable condition. */
export function unreachableBecause(err: unknown, mailbox: string, now: number): BackupReachability {
  const f = classifyGoogleError(err, mailbox, now);
  const oauth = oauthErrorOf(err);
  const reason =
    oauth === 'unauthorized_client'
      ? 'DelegationMissing'
      : f.kind === 'failed'
        ? 'UnknownUser'
        : oauth === 'invalid_grant'
          ? 'KeyRejected'
          : (err as ErrorLike).response === undefined
            ? 'Unreachable'
            : 'TokenError';
  return { reachable: false, reason, message: f.detail };
}
