// Whether a destination answers, in the spirit of Postfix's "delivery
// temporarily suspended": after SUSPEND_AFTER attempts in a row that failed at
// the session level, the destination is down: suspended with backoff, then
// probed with one delivery at a time until it answers.
import type { Logger } from 'pino';
import type { BackupHealth } from '../../api/relay/admin.js';
import { backoffMs } from '../../lib/backoff.js';
import type { Destination, RecipientOutcome } from '../types.js';

/** Attempts in a row that defer every recipient before a destination counts as down. */
const SUSPEND_AFTER = 5;

/**
 * Whether deferrals speak of the destination rather than of a recipient: no
 * SMTP reply at all (connection refused, timeout, TLS failure) or 421 (service
 * not available). A recipient's 450/452, or a pacing hint (retryAfterMs), does
 * not make a destination "down" (Postfix marks a destination dead only on
 * session-level trouble, too).
 */
export function isSessionFailure(outcomes: readonly RecipientOutcome[]): boolean {
  return (
    outcomes.length > 0 &&
    outcomes.every(
      (o) =>
        o.status === 'deferred' &&
        o.retryAfterMs === undefined &&
        (!/^[245]\d\d\b/.test(o.detail) || /^421\b/.test(o.detail)),
    )
  );
}

export interface DestinationHealthOptions {
  minBackoffMs: number;
  maxBackoffMs: number;
  random: () => number;
  log: Logger;
  /** The suspension is over: deliveries may start again. */
  onResume: () => void;
  /**
   * The destination answered a delivery after attempts that failed at the
   * session level (its probe after a suspension, or the first answer after a
   * short outage), or for the first time since start (mail in the spool may wait
   * out the backoff of an outage before the restart): what waits for it may go now.
   */
  onRecovered: () => void;
}

export class DestinationHealth {
  /** Attempts in a row that deferred every recipient at the session level. */
  private failStreak = 0;
  private suspensions = 0;
  private suspendedUntil = 0;
  private resumeTimer: NodeJS.Timeout | undefined;
  /** A delivery was attempted since start (the health is known). */
  private attempted = false;
  /** No answer since start, or since an attempt failed at the session level. */
  private unanswered = true;

  constructor(
    private readonly dest: Destination,
    private readonly o: DestinationHealthOptions,
  ) {}

  /** The last attempts all failed without an answer (Postfix: "delivery temporarily suspended"). */
  get isDown(): boolean {
    return this.failStreak >= SUSPEND_AFTER;
  }

  /** No delivery may start before the suspension's backoff is over. */
  isSuspended(now: number): boolean {
    return this.suspendedUntil > now;
  }

  /** 'unknown' before the first attempt since start, then 'down' or 'up'. */
  get reachability(): BackupHealth {
    return !this.attempted ? 'unknown' : this.isDown ? 'down' : 'up';
  }

  /** After an attempt: a destination that fails at the session level is suspended, with backoff, then probed with one delivery. */
  noteAttempt(sessionFailure: boolean, now: number): void {
    this.attempted = true;
    if (!sessionFailure) {
      if (this.isDown) this.o.log.info({ destination: this.dest }, 'destination answers again: deliveries resume');
      const recovered = this.unanswered;
      this.unanswered = false;
      this.failStreak = 0;
      this.suspensions = 0;
      this.suspendedUntil = 0;
      if (recovered) this.o.onRecovered();
      return;
    }
    this.unanswered = true;
    this.failStreak++;
    if (this.failStreak < SUSPEND_AFTER || this.suspendedUntil > now) return;
    this.suspensions++;
    const delay = backoffMs(this.suspensions, this.o.minBackoffMs, this.o.maxBackoffMs, this.o.random);
    this.suspendedUntil = now + delay;
    this.o.log.warn(
      { destination: this.dest, deferredInARow: this.failStreak, retryInMs: delay },
      'destination not answering: delivery temporarily suspended',
    );
    clearTimeout(this.resumeTimer);
    this.resumeTimer = setTimeout(() => this.o.onResume(), delay + 1);
    this.resumeTimer.unref();
  }

  /** Forget that the destination was down (the operator says it is healthy again). */
  resume(): void {
    this.failStreak = 0;
    this.suspensions = 0;
    this.suspendedUntil = 0;
    clearTimeout(this.resumeTimer);
  }

  stop(): void {
    clearTimeout(this.resumeTimer);
  }
}
