// The relay's failover state: whether mail currently goes to the backup too
// (FailoverOnly), since when, and the replay rate towards the primary. The
// operator sets it through PUT /admin/failover (http.ts; the body and the
// answer are in src/api/relay/admin.ts); the relay never needs the operator
// to deliver (spec.failover.messageDeadline is its own fallback).
import { timingSafeEqual, createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { FailoverSnapshot, FailoverUpdate } from '../../api/relay/admin.js';

/** What the failover state itself holds of the admin snapshot. */
export type FailoverStateSnapshot = Pick<FailoverSnapshot, 'active' | 'since' | 'replayMaxMessagesPerSecond' | 'holdPrimary'>;

/**
 * The rest of the snapshot: numbers the scheduler publishes of its own deliveries
 * (copies to the backup and the replay of the failover that last started, its queues).
 */
export type DeliveryFacts = Omit<FailoverSnapshot, keyof FailoverStateSnapshot>;

/** The admin snapshot: the state, and the scheduler's numbers read at the same moment. */
export function failoverSnapshot(state: FailoverState, facts: () => DeliveryFacts): FailoverSnapshot {
  return { ...state.snapshot(), ...facts() };
}

export class FailoverState extends EventEmitter<{ change: [FailoverStateSnapshot, boolean] }> {
  private active: boolean;
  private since: Date | null = null;
  private rate: number;
  private hold = false;

  constructor(initial: { active: boolean; replayMaxMessagesPerSecond: number }) {
    super();
    this.active = initial.active;
    this.rate = initial.replayMaxMessagesPerSecond;
  }

  get isActive(): boolean {
    return this.active;
  }

  get replayRate(): number {
    return this.rate;
  }

  /** A maintenance window: nothing is delivered to the primary until it ends. */
  get holdsPrimary(): boolean {
    return this.hold;
  }

  snapshot(): FailoverStateSnapshot {
    return { active: this.active, since: this.since?.toISOString() ?? null, replayMaxMessagesPerSecond: this.rate, holdPrimary: this.hold };
  }

  /**
   * Applies an update; emits 'change' (snapshot, wasActive) when anything changed (the
   * scheduler starts counting a new failover's copies and replay when it becomes active).
   */
  set(update: FailoverUpdate, now = new Date()): FailoverStateSnapshot {
    const wasActive = this.active;
    // Only an active failover holds the primary's mail.
    const hold = update.active && update.holdPrimary === true;
    const changed =
      update.active !== this.active ||
      hold !== this.hold ||
      (update.maxMessagesPerSecond !== undefined && update.maxMessagesPerSecond !== this.rate);
    if (update.active !== this.active) this.since = now;
    this.active = update.active;
    this.hold = hold;
    if (update.maxMessagesPerSecond !== undefined) this.rate = update.maxMessagesPerSecond;
    const snap = this.snapshot();
    if (changed) this.emit('change', snap, wasActive);
    return snap;
  }
}

/** Constant-time check of an `Authorization: Bearer <token>` header (digests make the lengths equal). */
export function bearerMatches(header: string | undefined, token: string | undefined): boolean {
  if (!token || !header) return false;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) return false;
  const a = createHash('sha256').update(m[1]!).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}
