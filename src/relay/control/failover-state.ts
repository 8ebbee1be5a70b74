// The relay's failover state: whether mail currently goes to the backup too
// (FailoverOnly), since when, and the replay rate towards the primary. The
// operator sets it through PUT /admin/failover (http.ts; the body and the
// answer are in src/api/relay/admin.ts); the relay never needs the operator
// to deliver (spec.failover.messageDeadline is its own fallback).
import { timingSafeEqual, createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { BackupHealth, FailoverSnapshot, FailoverUpdate } from '../../api/relay/admin.js';

/** Live numbers the scheduler provides for the snapshot. */
export interface QueueFacts {
  replaying: boolean;
  queuedPrimary: number;
  queuedBackup: number;
  /** Unknown when not told. */
  backup?: BackupHealth;
}

export class FailoverState extends EventEmitter<{ change: [FailoverSnapshot, boolean] }> {
  private active: boolean;
  private since: Date | null = null;
  private rate: number;
  private toBackup = 0;
  private replayed = 0;
  private facts: () => QueueFacts = () => ({ replaying: false, queuedPrimary: 0, queuedBackup: 0 });

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

  /** The scheduler tells how to read its queues. */
  setQueueFacts(f: () => QueueFacts): void {
    this.facts = f;
  }

  /** A message was delivered to the backup (counted while failover is active). */
  noteBackupCopy(): void {
    if (this.active) this.toBackup++;
  }

  /** A message was delivered to the primary during a replay. */
  noteReplayed(): void {
    this.replayed++;
  }

  snapshot(): FailoverSnapshot {
    return {
      active: this.active,
      since: this.since?.toISOString() ?? null,
      replayMaxMessagesPerSecond: this.rate,
      messagesToBackup: this.toBackup,
      messagesReplayed: this.replayed,
      backup: 'unknown',
      ...this.facts(),
    };
  }

  /** Applies an update; emits 'change' (snapshot, wasActive) when anything changed. */
  set(update: FailoverUpdate, now = new Date()): FailoverSnapshot {
    const wasActive = this.active;
    const changed =
      update.active !== this.active ||
      (update.maxMessagesPerSecond !== undefined && update.maxMessagesPerSecond !== this.rate);
    if (update.active !== this.active) {
      this.since = now;
      // A new failover counts its own copies and its own replay (the primary may take
      // mail again, paced, before the failover ends).
      if (update.active) {
        this.toBackup = 0;
        this.replayed = 0;
      }
    }
    this.active = update.active;
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
