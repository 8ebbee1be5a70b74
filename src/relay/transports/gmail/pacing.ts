// Per-mailbox pacing of Gmail calls: a token bucket of quota units below
// Gmail's 15,000 per user per minute (so a replay never trips the 429s the
// pacing exists to avoid), a pause when Google answered with a quota error,
// and the backoff hint after failures in a row. Gmail counts the quota per
// mailbox across every relay replica: the operator gives each replica its
// share (PUT /admin/failover gmailUnitsPerMinute, setUnitsPerMinute), and the
// burst shrinks with it, so all replicas together stay within 13,500 units a
// minute plus one burst of 1,000.
import { GMAIL_MAILBOX_BURST_UNITS, GMAIL_MAILBOX_UNITS_PER_MINUTE } from '../../../api/relay/admin.js';
import { backoffMs } from '../../../lib/backoff.js';
import { TokenBucket } from '../../../lib/token-bucket.js';

/** Gmail's quota: units per call and per user per minute. */
export const GMAIL_UNITS = { import: 25, list: 5, perUserPerMinute: 15_000 } as const;

export interface PacingOptions {
  /** Quota units per mailbox per minute; defaults stay below Gmail's 15,000 with a margin. */
  unitsPerMinute?: number;
  burstUnits?: number;
  /** Backoff hint when Google does not say when to retry: base * 2^(failures-1), capped. */
  backoff?: { baseMs?: number; maxMs?: number };
  now: () => number;
}

interface MailboxState {
  bucket: TokenBucket;
  /** Google said to wait (429): no calls before this time. */
  pausedUntil: number;
  failures: number;
}

export class MailboxPacing {
  private units: number;
  private burstUnits: number;
  /** The configured budget and burst, which a share scales down together. */
  private readonly fullUnits: number;
  private readonly fullBurst: number;
  private readonly backoffBase: number;
  private readonly backoffMax: number;
  private readonly now: () => number;
  private readonly mailboxes = new Map<string, MailboxState>();

  constructor(o: PacingOptions) {
    this.units = this.fullUnits = o.unitsPerMinute ?? GMAIL_MAILBOX_UNITS_PER_MINUTE;
    this.burstUnits = this.fullBurst = o.burstUnits ?? GMAIL_MAILBOX_BURST_UNITS;
    if (this.units > GMAIL_UNITS.perUserPerMinute) {
      throw new Error(`pacing.unitsPerMinute ${this.units} exceeds Gmail's ${GMAIL_UNITS.perUserPerMinute} per user`);
    }
    this.backoffBase = o.backoff?.baseMs ?? 5_000;
    this.backoffMax = o.backoff?.maxMs ?? 10 * 60_000;
    this.now = o.now;
  }

  /** Quota units per mailbox per minute this relay spends now. */
  get unitsPerMinute(): number {
    return this.units;
  }

  /**
   * This relay's share of each mailbox's quota (the operator splits the budget across the
   * replicas); the burst scales with it (at least one import). Never above the configured budget.
   */
  setUnitsPerMinute(share: number): void {
    const units = Math.max(GMAIL_UNITS.import, Math.min(this.fullUnits, Math.floor(share)));
    if (units === this.units) return;
    this.units = units;
    this.burstUnits = Math.max(GMAIL_UNITS.import, Math.round((this.fullBurst * units) / this.fullUnits));
    for (const s of this.mailboxes.values()) s.bucket.setRate(this.burstUnits, this.units);
  }

  /** Takes an import's units for `mailbox`; when it must wait, says why and for how long instead. */
  admitImport(mailbox: string): { detail: string; retryAfterMs: number } | undefined {
    const state = this.stateOf(mailbox);
    const t = this.now();
    if (state.pausedUntil > t) return { detail: `Gmail rate limit for ${mailbox}: paused`, retryAfterMs: state.pausedUntil - t };
    const wait = state.bucket.take(GMAIL_UNITS.import);
    if (wait > 0) {
      return { detail: `pacing ${mailbox} below Gmail's per-user quota (${this.unitsPerMinute} units/min)`, retryAfterMs: wait };
    }
    return undefined;
  }

  /** Charges a search's units (it runs even when the bucket is empty: it is rare). */
  chargeList(mailbox: string): void {
    this.stateOf(mailbox).bucket.charge(GMAIL_UNITS.list);
  }

  succeeded(mailbox: string): void {
    this.stateOf(mailbox).failures = 0;
  }

  /** Counts a failure; returns when to retry: Google's hint, or the backoff after this many failures. */
  failed(mailbox: string, retryAfterMs: number | undefined): number {
    const state = this.stateOf(mailbox);
    state.failures++;
    return retryAfterMs ?? backoffMs(state.failures, this.backoffBase, this.backoffMax);
  }

  /** Google answered with a quota error: no call to `mailbox` for `ms`. */
  pause(mailbox: string, ms: number): void {
    const state = this.stateOf(mailbox);
    state.pausedUntil = Math.max(state.pausedUntil, this.now() + ms);
  }

  clear(): void {
    this.mailboxes.clear();
  }

  private stateOf(mailbox: string): MailboxState {
    let s = this.mailboxes.get(mailbox);
    if (!s) {
      s = { bucket: new TokenBucket(this.burstUnits, this.unitsPerMinute, this.now), pausedUntil: 0, failures: 0 };
      this.mailboxes.set(mailbox, s);
    }
    return s;
  }
}
