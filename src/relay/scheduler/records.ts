// What a delivery attempt, or the end of a message's retention, writes into
// its per-recipient records, and when a deferred destination is tried again.
// Pure: the scheduler persists, report.ts counts and logs.
import type { DestinationState, MessageState } from '../spool/state.js';
import type { Destination, RecipientOutcome } from '../types.js';
import { DESTINATIONS, Destinations } from './destinations.js';

export interface AttemptRecord {
  delivered: string[];
  /** Recipients refused for good, with the reply. */
  failed: Array<{ recipient: string; detail: string }>;
  deferred: number;
  /** The longest retryAfterMs a deferral asked for (0: none). */
  retryAfter: number;
  /** Some recipient was deferred: the next attempt is this far off (nextAttemptAt is set). */
  retryInMs?: number;
  /** Every recipient's outcome, for the metrics. */
  statuses: Array<RecipientOutcome['status']>;
}

/**
 * Records the outcomes of one attempt at `ds` for `recipients` (one without an
 * outcome is deferred) and counts the attempt; after a deferral the next one is
 * `backoff(attempts)` away, or as far as the transport asked if that is longer.
 */
export function recordOutcomes(
  ds: DestinationState,
  recipients: readonly string[],
  outcomes: readonly RecipientOutcome[],
  now: number,
  backoff: (attempts: number) => number,
): AttemptRecord {
  const rec: AttemptRecord = { delivered: [], failed: [], deferred: 0, retryAfter: 0, statuses: [] };
  const byOutcome = new Map(outcomes.map((o) => [o.recipient, o]));
  for (const rcpt of recipients) {
    const o = byOutcome.get(rcpt) ?? { recipient: rcpt, status: 'deferred' as const, detail: 'no outcome from transport' };
    rec.statuses.push(o.status);
    if (o.status === 'delivered') {
      ds.recipients[rcpt] = { status: 'delivered', detail: o.detail, at: now };
      rec.delivered.push(rcpt);
    } else if (o.status === 'failed') {
      ds.recipients[rcpt] = { status: 'failed', detail: o.detail, at: now };
      rec.failed.push({ recipient: rcpt, detail: o.detail });
    } else {
      rec.deferred++;
      const reason = ds.recipients[rcpt]?.reason;
      ds.recipients[rcpt] = { status: 'pending', detail: o.detail, ...(reason ? { reason } : {}), ...(o.scope === 'recipient' ? { recipientDeferral: true as const } : {}) };
      ds.lastError = o.detail;
      if (o.retryAfterMs) rec.retryAfter = Math.max(rec.retryAfter, o.retryAfterMs);
    }
  }
  ds.attempts++;
  if (rec.deferred > 0) {
    rec.retryInMs = Math.max(backoff(ds.attempts), rec.retryAfter);
    ds.nextAttemptAt = now + rec.retryInMs;
  }
  return rec;
}

/** Recipients still pending at `ds`. */
export const pendingRecipients = (ds: DestinationState): string[] =>
  Object.entries(ds.recipients)
    .filter(([, r]) => r.status === 'pending')
    .map(([r]) => r);

/** The destinations with pending recipients, and whether any recipient failed for good. */
export function pendingDestinations(st: MessageState): { pendingAt: Destinations; failed: boolean } {
  const pendingAt = new Destinations();
  let failed = false;
  for (const dest of DESTINATIONS) {
    const ds = st.deliveries[dest];
    if (!ds) continue;
    for (const r of Object.values(ds.recipients)) {
      if (r.status === 'pending') pendingAt.add(dest);
      if (r.status === 'failed') failed = true;
    }
  }
  return { pendingAt, failed };
}

/** Retention is over: every pending recipient fails with the last error; returns them per destination. */
export function expireRecipients(st: MessageState, retention: string, now: number): Partial<Record<Destination, string[]>> {
  const left: Partial<Record<Destination, string[]>> = {};
  for (const dest of DESTINATIONS) {
    const ds = st.deliveries[dest];
    if (!ds) continue;
    for (const [rcpt, r] of Object.entries(ds.recipients)) {
      if (r.status !== 'pending') continue;
      ds.recipients[rcpt] = {
        status: 'failed',
        detail: `retention ${retention} expired; last error: ${r.detail ?? ds.lastError ?? 'none'}`,
        at: now,
      };
      (left[dest] ??= []).push(rcpt);
    }
  }
  return left;
}
