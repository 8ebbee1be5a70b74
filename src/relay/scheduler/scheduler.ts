// Delivery queues, in the spirit of Postfix's qmgr: one queue per destination
// with a concurrency window, exponential backoff with jitter for deferrals
// (4xx, connection trouble, retryAfterMs from a transport), permanent failure
// records for 5xx, and a token bucket that paces the replay to the primary
// after an outage. Only envelopes and delivery state live in memory; bodies
// are streamed from the spool file by the transports.
import type { Logger } from 'pino';
import { parseDuration } from '../../api/v1alpha1/formats.js';
import { backoffMs } from '../../lib/backoff.js';
import { TokenBucket } from '../../lib/token-bucket.js';
import type { AuditLog } from '../audit.js';
import type { RelayConfig } from '../../api/relay/config.js';
import type { FailoverState } from '../control/failover-state.js';
import type { RelayMetrics } from '../metrics.js';
import { decideBackup, messageDeadlineMs, type MessageFacts } from '../policy/policy.js';
import type { Spool } from '../spool/spool.js';
import type { DestinationState, MessageState } from '../spool/state.js';
import type { Destination, RecipientOutcome, SpooledMessage, Transport } from '../types.js';

const DESTINATIONS: readonly Destination[] = ['primary', 'backup'];
/** Attempts in a row that defer every recipient before a destination counts as down. */
const SUSPEND_AFTER = 5;

/** A set of destinations in one small number (a queue of 50,000 messages holds three per message). */
class Destinations implements Iterable<Destination> {
  private bits = 0;
  has(d: Destination): boolean {
    return (this.bits & bit(d)) !== 0;
  }
  add(d: Destination): void {
    this.bits |= bit(d);
  }
  delete(d: Destination): void {
    this.bits &= ~bit(d);
  }
  get size(): number {
    return (this.bits & 1) + ((this.bits >> 1) & 1);
  }
  *[Symbol.iterator](): Iterator<Destination> {
    for (const d of DESTINATIONS) if (this.has(d)) yield d;
  }
}
const bit = (d: Destination) => (d === 'primary' ? 1 : 2);

/**
 * One message in the queue. While it is being worked on its state is parsed
 * (`state`, `message`, `facts`); while it only waits (a retry later, a
 * destination that is down) it is frozen to its JSON text, which takes a
 * fraction of the memory of the objects: a backlog of 50,000 messages while
 * Exchange is down must fit in a small pod. Reading `state` thaws it.
 */
class Entry {
  readonly id: string;
  readonly receivedAt: number;
  readonly busy = new Destinations();
  /** Destinations whose ready queue or timer heap holds this entry. */
  readonly queued = new Destinations();
  /** Destinations with pending recipients (for the queue depth gauge). */
  pendingAt = new Destinations();
  closing = false;
  /** Recovery after a restart is checking the destinations: not frozen meanwhile. */
  recovering = false;
  /** FailoverOnly: some recipient has no backup decision yet (the sweep looks again). */
  undecided = false;
  private live: { state: MessageState; message: SpooledMessage; facts: MessageFacts } | undefined;
  private frozen: string | undefined;

  constructor(
    state: MessageState,
    message: SpooledMessage,
    private readonly spool: Spool,
  ) {
    this.id = state.id;
    this.receivedAt = state.receivedAt;
    this.live = Entry.open(state, message);
  }

  private static open(state: MessageState, message: SpooledMessage): NonNullable<Entry['live']> {
    return { state, message, facts: { mailFrom: state.mailFrom, headers: state.headers ?? [], receivedAt: state.receivedAt } };
  }

  private thaw(): NonNullable<Entry['live']> {
    if (!this.live) {
      const state = JSON.parse(this.frozen!) as MessageState;
      this.frozen = undefined;
      this.live = Entry.open(state, this.spool.toMessage(state));
    }
    return this.live;
  }

  get state(): MessageState {
    return this.thaw().state;
  }
  get message(): SpooledMessage {
    return this.thaw().message;
  }
  get facts(): MessageFacts {
    return this.thaw().facts;
  }
  get isFrozen(): boolean {
    return this.live === undefined;
  }

  /** The state without thawing (a parsed copy when frozen). */
  peek(): MessageState {
    return this.live ? this.live.state : (JSON.parse(this.frozen!) as MessageState);
  }

  /** Only an entry nobody is working on; its cached body is dropped too. */
  freeze(): void {
    if (!this.live || this.busy.size > 0 || this.recovering || this.closing) return;
    this.spool.releaseBody(this.live.message);
    this.frozen = JSON.stringify(this.live.state);
    this.live = undefined;
  }
}

/** A binary min-heap of timers. */
class TimerHeap {
  private items: Array<{ at: number; id: string; dest: Destination }> = [];
  get size(): number {
    return this.items.length;
  }
  peek(): { at: number; id: string; dest: Destination } | undefined {
    return this.items[0];
  }
  push(item: { at: number; id: string; dest: Destination }): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]!.at <= a[i]!.at) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }
  pop(): { at: number; id: string; dest: Destination } | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]!.at < a[m]!.at) m = l;
        if (r < a.length && a[r]!.at < a[m]!.at) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
  /** Removes every item for which `f` is true. */
  removeWhere(
    f: (item: { at: number; id: string; dest: Destination }) => boolean,
  ): Array<{ at: number; id: string; dest: Destination }> {
    const removed = this.items.filter(f);
    if (removed.length === 0) return removed;
    const kept = this.items.filter((i) => !f(i));
    this.items = [];
    for (const k of kept) this.push(k);
    return removed;
  }
}

/** A FIFO with O(1) shift. */
class Fifo {
  private items: string[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(id: string): void {
    this.items.push(id);
  }
  shift(): string | undefined {
    if (this.head >= this.items.length) return undefined;
    const v = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return v;
  }
}

export interface SchedulerDeps {
  config: RelayConfig;
  spool: Spool;
  transports: Record<Destination, Transport>;
  audit: AuditLog;
  metrics: RelayMetrics;
  failover: FailoverState;
  log: Logger;
  now?: () => number;
  random?: () => number;
}

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

export class Scheduler {
  private readonly entries = new Map<string, Entry>();
  /** Ready to try: never-attempted messages (incoming) and retries (deferred), like qmgr's two queues. */
  private readonly fresh: Record<Destination, Fifo> = { primary: new Fifo(), backup: new Fifo() };
  private readonly retry: Record<Destination, Fifo> = { primary: new Fifo(), backup: new Fifo() };
  private readonly turn: Record<Destination, number> = { primary: 0, backup: 0 };
  /** Attempts in a row that deferred every recipient: a destination that is down. */
  private readonly failStreak: Record<Destination, number> = { primary: 0, backup: 0 };
  /** A delivery to the destination was attempted since start (its health is known). */
  private readonly attempted: Record<Destination, boolean> = { primary: false, backup: false };
  private readonly suspensions: Record<Destination, number> = { primary: 0, backup: 0 };
  private readonly suspendedUntil: Record<Destination, number> = { primary: 0, backup: 0 };
  private resumeTimers: Partial<Record<Destination, NodeJS.Timeout>> = {};
  private readonly timers = new TimerHeap();
  private readonly inflight: Record<Destination, number> = { primary: 0, backup: 0 };
  private readonly depth: Record<Destination, number> = { primary: 0, backup: 0 };
  private readonly running = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private readonly concurrency: Record<Destination, number>;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly retentionMs: number;
  private readonly deadlineMs: number;
  private replay: TokenBucket | null = null;
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeAt = Infinity;
  private sweepTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly instance: string;

  constructor(private readonly d: SchedulerDeps) {
    this.now = d.now ?? Date.now;
    this.random = d.random ?? Math.random;
    this.concurrency = { primary: d.config.tuning.primaryConcurrency, backup: d.config.tuning.backupConcurrency };
    this.retentionMs = parseDuration(d.config.spec.relay.spool.retention);
    this.deadlineMs = messageDeadlineMs(d.config.spec);
    this.instance = d.config.instance;
    d.failover.on('change', (snap, wasActive) => {
      d.metrics.failoverActive.set({ instance: this.instance }, snap.active ? 1 : 0);
      if (snap.active) {
        this.sweep();
        // Paced from the start: when the primary answers again before the operator ends
        // the failover, the relay must not flood it at full concurrency.
        this.setReplayRate(snap.replayMaxMessagesPerSecond);
      } else if (wasActive) this.startReplay(snap.replayMaxMessagesPerSecond);
      else if (this.replay) this.startReplay(snap.replayMaxMessagesPerSecond);
    });
    d.metrics.failoverActive.set({ instance: this.instance }, d.failover.isActive ? 1 : 0);
    d.spool.journal.setLive(() => this.liveStates());
    d.failover.setQueueFacts(() => ({
      replaying: this.replay !== null,
      queuedPrimary: this.depth.primary,
      queuedBackup: this.depth.backup,
      backup: !this.attempted.backup ? 'unknown' : this.isDown('backup') ? 'down' : 'up',
    }));
  }

  start(): void {
    this.sweepTimer = setInterval(() => this.sweep(), this.d.config.tuning.sweepIntervalMs);
    this.sweepTimer.unref();
    this.updateGauges();
  }

  /**
   * The intake backpressure signal: deliveries in flight plus new messages
   * waiting for their first attempt at a destination that is up. Deferred mail
   * waiting for a retry, and anything for a destination that is down, does not
   * count: an outage of Exchange must not stop intake, that is what the spool is for.
   */
  backlog(): number {
    let n = this.inflight.primary + this.inflight.backup;
    for (const dest of DESTINATIONS) if (!this.isDown(dest)) n += this.fresh[dest].length;
    return n;
  }

  /** A destination whose last attempts all deferred (Postfix: "delivery temporarily suspended"). */
  isDown(dest: Destination): boolean {
    return this.failStreak[dest] >= SUSPEND_AFTER;
  }

  private pushReady(dest: Destination, id: string, attempts: number): void {
    (attempts === 0 ? this.fresh : this.retry)[dest].push(id);
  }

  /** New mail first, but every fourth turn goes to a retry so deferred mail is not starved. */
  private takeReady(dest: Destination): string | undefined {
    const f = this.fresh[dest];
    const r = this.retry[dest];
    if (f.length > 0 && (r.length === 0 || this.turn[dest]++ % 4 !== 3)) return f.shift();
    return r.shift() ?? f.shift();
  }

  private readyLength(dest: Destination): number {
    return this.fresh[dest].length + this.retry[dest].length;
  }

  /** After an attempt: a destination that defers everything is suspended, with backoff, then probed with one delivery. */
  private noteAttempt(dest: Destination, allDeferred: boolean, now: number): void {
    this.attempted[dest] = true;
    if (!allDeferred) {
      if (this.isDown(dest)) this.d.log.info({ destination: dest }, 'destination answers again: deliveries resume');
      this.failStreak[dest] = 0;
      this.suspensions[dest] = 0;
      this.suspendedUntil[dest] = 0;
      return;
    }
    this.failStreak[dest]++;
    if (this.failStreak[dest] < SUSPEND_AFTER || this.suspendedUntil[dest] > now) return;
    this.suspensions[dest]++;
    const t = this.d.config.tuning;
    const delay = backoffMs(this.suspensions[dest], t.minBackoffMs, t.maxBackoffMs, this.random);
    this.suspendedUntil[dest] = now + delay;
    this.d.log.warn(
      { destination: dest, deferredInARow: this.failStreak[dest], retryInMs: delay },
      'destination not answering: delivery temporarily suspended',
    );
    clearTimeout(this.resumeTimers[dest]);
    const timer = setTimeout(() => this.pump(), delay + 1);
    timer.unref();
    this.resumeTimers[dest] = timer;
  }

  /** Forget that a destination was down (the operator says it is healthy again). */
  private resume(dest: Destination): void {
    this.failStreak[dest] = 0;
    this.suspensions[dest] = 0;
    this.suspendedUntil[dest] = 0;
    clearTimeout(this.resumeTimers[dest]);
  }

  /** Messages with recipients still pending at `dest`. */
  queueDepth(dest: Destination): number {
    return this.depth[dest];
  }

  get size(): number {
    return this.entries.size;
  }

  /** Paces primary deliveries at `perSecond` until the primary queue is empty (null: no pacing). */
  setReplayRate(perSecond: number | null): void {
    this.replay = perSecond === null ? null : new TokenBucket(Math.max(1, perSecond), perSecond * 60, this.now);
    this.pump();
  }

  get replayActive(): boolean {
    return this.replay !== null;
  }

  /** The primary is back: retry everything waiting for it now (like `postqueue -f`), paced. */
  private startReplay(rate: number): void {
    this.resume('primary');
    this.setReplayRate(rate);
    const moved = this.timers.removeWhere((t) => t.dest === 'primary');
    // Straight into the retry queue, still frozen: they are thawed one at a time as the pacing lets them go.
    for (const t of moved) {
      const e = this.entries.get(t.id);
      if (!e) continue;
      if (e.closing || e.busy.has('primary') || !e.pendingAt.has('primary')) e.queued.delete('primary');
      else this.retry.primary.push(e.id);
    }
    this.d.log.info(
      { replay: moved.length, maxMessagesPerSecond: rate },
      'failover ended: replaying deferred mail to the primary',
    );
    this.pump();
  }

  /** Takes a committed message (from inbound, with its body in memory if cached, or from the spool at start). */
  add(state: MessageState, opts: { recovered?: boolean; message?: SpooledMessage } = {}): void {
    const entry = new Entry(state, opts.message ?? this.d.spool.toMessage(state), this.d.spool);
    this.entries.set(state.id, entry);
    if (opts.recovered) void this.recover(entry);
    else this.evaluate(entry, false);
  }

  /** After a crash: attempts that were in flight may or may not have reached the destination. */
  private async recover(entry: Entry): Promise<void> {
    entry.recovering = true;
    try {
      await this.recoverAttempts(entry);
    } finally {
      entry.recovering = false;
    }
  }

  private async recoverAttempts(entry: Entry): Promise<void> {
    let dirty = false;
    for (const dest of DESTINATIONS) {
      const ds = entry.state.deliveries[dest];
      if (!ds?.inFlightSince) continue;
      delete ds.inFlightSince;
      dirty = true;
      const pending = Object.entries(ds.recipients)
        .filter(([, r]) => r.status === 'pending')
        .map(([r]) => r);
      const t = this.d.transports[dest];
      for (const rcpt of pending) {
        let known = false;
        if (t.alreadyDelivered) {
          try {
            known = await t.alreadyDelivered(entry.message, rcpt);
          } catch {
            known = false;
          }
        }
        if (known) {
          ds.recipients[rcpt] = { status: 'delivered', detail: 'found at destination after restart', at: this.now() };
          if (dest === 'backup') void this.auditCopy(entry, [rcpt]);
        } else {
          this.d.metrics.possibleDuplicates.inc({ instance: this.instance, destination: dest });
        }
      }
      const unknown = pending.filter((r) => ds.recipients[r]?.status === 'pending');
      if (unknown.length > 0) {
        this.d.log.warn(
          { id: entry.state.id, messageId: entry.state.messageId, destination: dest, recipients: unknown },
          'delivery was in flight when the relay stopped; retrying (the destination may receive it twice)',
        );
      }
    }
    this.evaluate(entry, dirty);
  }

  private auditCopy(entry: Entry, recipients: string[]): Promise<void> {
    this.d.metrics.auditRecords.inc({ instance: this.instance, action: 'copied-to-backup' });
    return this.d.audit.record(entry.message, recipients, 'copied-to-backup');
  }

  /**
   * Decides due backup copies, completes or dead-letters a finished message,
   * otherwise (re)queues it; persists the state when anything changed.
   */
  private evaluate(entry: Entry, dirtyIn: boolean): void {
    // While stopping, outcomes of deliveries that were in flight are still recorded.
    if (entry.closing) return;
    const st = entry.state;
    const now = this.now();
    let dirty = dirtyIn;
    const primary = st.deliveries.primary!;
    // 1. backup decisions for recipients without one
    const excluded = new Map<string, string[]>();
    entry.undecided = false;
    for (const rcpt of st.rcptTo) {
      if (st.deliveries.backup?.recipients[rcpt]) continue;
      const p = primary.recipients[rcpt];
      const decision = decideBackup(this.d.config.spec, entry.facts, rcpt, {
        failoverActive: this.d.failover.isActive,
        now,
        primaryDelivered: p !== undefined && p.status !== 'pending',
      });
      if (decision.reason === 'not-needed') entry.undecided = true;
      if (decision.reason === 'not-needed' || decision.reason === 'primary-delivered') continue;
      st.deliveries.backup ??= { recipients: {}, attempts: 0, nextAttemptAt: 0 };
      dirty = true;
      if (decision.copy) {
        st.deliveries.backup.recipients[rcpt] = { status: 'pending', detail: decision.reason };
      } else if (decision.reason === 'excluded') {
        st.deliveries.backup.recipients[rcpt] = { status: 'excluded', rule: decision.rule, at: now };
        excluded.set(decision.rule, [...(excluded.get(decision.rule) ?? []), rcpt]);
      }
    }
    for (const [rule, rcpts] of excluded) {
      this.d.metrics.auditRecords.inc({ instance: this.instance, action: 'excluded' });
      void this.d.audit.record(entry.message, rcpts, 'excluded', rule);
      this.d.log.info(
        { id: st.id, messageId: st.messageId, rule, recipients: rcpts },
        'kept out of the backup by exclusion rule',
      );
    }
    // 2. pending work per destination
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
    this.setPending(entry, pendingAt);
    if (pendingAt.size === 0 && entry.busy.size === 0) {
      entry.closing = true;
      this.entries.delete(st.id);
      const done = failed
        ? this.d.spool.moveToDead(st, 'rejected by a destination (see deliveries)', now, entry.message).then(() => {
            this.d.log.warn(
              { id: st.id, messageId: st.messageId },
              'message moved to dead/: a destination refused it for good',
            );
          })
        : this.d.spool.remove(st, entry.message);
      this.track(
        done.catch((e: unknown) =>
          this.d.log.error({ id: st.id, err: (e as Error).message }, 'could not finish spool entry'),
        ),
      );
      this.updateGauges();
      this.pump();
      return;
    }
    if (dirty) this.track(this.d.spool.saveState(st).catch(() => undefined));
    if (this.stopped) return;
    this.enqueue(entry);
    this.pump();
  }

  private setPending(entry: Entry, now: Destinations): void {
    for (const dest of DESTINATIONS) {
      const had = entry.pendingAt.has(dest);
      const has = now.has(dest);
      if (had !== has) this.depth[dest] += has ? 1 : -1;
    }
    entry.pendingAt = now;
  }

  private enqueue(entry: Entry): void {
    const now = this.now();
    let soon = entry.busy.size > 0;
    for (const dest of entry.pendingAt) {
      const ds = entry.state.deliveries[dest]!;
      if (ds.nextAttemptAt <= now && !this.isDown(dest)) soon = true;
      if (entry.busy.has(dest) || entry.queued.has(dest)) continue;
      entry.queued.add(dest);
      if (ds.nextAttemptAt <= now) this.pushReady(dest, entry.id, ds.attempts);
      else {
        this.timers.push({ at: ds.nextAttemptAt, id: entry.id, dest });
        this.armWake();
      }
    }
    // Only waiting (a retry later, or a destination that is down): frozen, the body read from the file when its time comes.
    if (!soon) entry.freeze();
  }

  /** The states of the messages in the queue (for the spool journal's compaction). */
  private *liveStates(): Iterable<MessageState> {
    for (const e of this.entries.values()) yield e.peek();
  }

  /** Messages frozen while they wait (for tests and the metrics). */
  get frozenCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.isFrozen) n++;
    return n;
  }

  private armWake(): void {
    const next = this.timers.peek();
    if (!next || this.stopped) return;
    if (this.wakeTimer && next.at >= this.wakeAt) return;
    clearTimeout(this.wakeTimer);
    this.wakeAt = next.at;
    this.wakeTimer = setTimeout(
      () => {
        this.wakeTimer = undefined;
        this.wakeAt = Infinity;
        const now = this.now();
        for (let t = this.timers.peek(); t && t.at <= now; t = this.timers.peek()) {
          this.timers.pop();
          if (this.entries.has(t.id)) this.retry[t.dest].push(t.id);
        }
        this.pump();
        this.armWake();
      },
      Math.max(0, next.at - this.now()),
    );
    this.wakeTimer.unref();
  }

  private pumpTimer: NodeJS.Timeout | undefined;

  private pump(): void {
    if (this.stopped) return;
    for (const dest of DESTINATIONS) {
      if (this.suspendedUntil[dest] > this.now()) continue;
      // A destination that is down gets one probing delivery at a time.
      const window = this.isDown(dest) ? 1 : this.concurrency[dest];
      while (this.inflight[dest] < window && this.readyLength(dest) > 0) {
        if (dest === 'primary' && this.replay) {
          const wait = this.replay.take(1);
          if (wait > 0) {
            if (!this.pumpTimer) {
              this.pumpTimer = setTimeout(() => {
                this.pumpTimer = undefined;
                this.pump();
              }, wait);
              this.pumpTimer.unref();
            }
            break;
          }
        }
        const id = this.takeReady(dest)!;
        const entry = this.entries.get(id);
        if (!entry || entry.closing) continue;
        entry.queued.delete(dest);
        if (entry.busy.has(dest) || !entry.pendingAt.has(dest)) continue;
        this.track(this.deliver(entry, dest));
      }
    }
    if (this.replay && !this.d.failover.isActive && this.depth.primary === 0 && this.inflight.primary === 0) {
      this.replay = null;
      this.d.log.info('replay to the primary finished');
    }
  }

  private track(p: Promise<unknown>): void {
    const t = p.then(
      () => undefined,
      () => undefined,
    );
    this.running.add(t);
    void t.then(() => this.running.delete(t));
  }

  private async deliver(entry: Entry, dest: Destination): Promise<void> {
    const st = entry.state;
    const ds = st.deliveries[dest] as DestinationState;
    const recipients = Object.entries(ds.recipients)
      .filter(([, r]) => r.status === 'pending')
      .map(([r]) => r);
    entry.busy.add(dest);
    this.inflight[dest]++;
    let outcomes: RecipientOutcome[];
    try {
      await this.d.spool.journal.attempt(st.id, dest, ds.attempts + 1).catch((e: unknown) => {
        this.d.log.warn({ id: st.id, err: (e as Error).message }, 'could not journal a delivery attempt');
      });
      outcomes = await this.d.transports[dest].deliver(entry.message, recipients, this.abort.signal);
    } catch (e) {
      outcomes = recipients.map((r) => ({
        recipient: r,
        status: 'deferred',
        detail: `transport error: ${(e as Error).message}`,
      }));
    } finally {
      this.inflight[dest]--;
      entry.busy.delete(dest);
    }
    if (this.stopped && outcomes.every((o) => o.status === 'deferred')) return;
    const now = this.now();
    const delivered: string[] = [];
    let retryAfter = 0;
    let deferred = 0;
    const byOutcome = new Map(outcomes.map((o) => [o.recipient, o]));
    for (const rcpt of recipients) {
      const o = byOutcome.get(rcpt) ?? {
        recipient: rcpt,
        status: 'deferred' as const,
        detail: 'no outcome from transport',
      };
      this.d.metrics.deliveries.inc({ instance: this.instance, destination: dest, outcome: o.status });
      if (o.status === 'delivered') {
        ds.recipients[rcpt] = { status: 'delivered', detail: o.detail, at: now };
        delivered.push(rcpt);
      } else if (o.status === 'failed') {
        ds.recipients[rcpt] = { status: 'failed', detail: o.detail, at: now };
        this.d.metrics.deadLettered.inc({ instance: this.instance, reason: 'rejected' });
        this.d.log.warn(
          { id: st.id, messageId: st.messageId, destination: dest, recipient: rcpt, detail: o.detail },
          'recipient refused for good (dead-letter record)',
        );
      } else {
        deferred++;
        ds.recipients[rcpt] = { status: 'pending', detail: o.detail };
        ds.lastError = o.detail;
        if (o.retryAfterMs) retryAfter = Math.max(retryAfter, o.retryAfterMs);
      }
    }
    if (delivered.length > 0) {
      this.d.metrics.latency.observe({ instance: this.instance, destination: dest }, (now - st.receivedAt) / 1000);
      if (dest === 'backup') {
        void this.auditCopy(entry, delivered);
        this.d.failover.noteBackupCopy();
      } else if (this.replay) {
        this.d.failover.noteReplayed();
      }
    }
    ds.attempts++;
    this.d.spool.journal.finished(st.id, dest);
    this.noteAttempt(dest, delivered.length === 0 && deferred === recipients.length && isSessionFailure(outcomes), now);
    if (deferred > 0) {
      const t = this.d.config.tuning;
      const delay = Math.max(backoffMs(ds.attempts, t.minBackoffMs, t.maxBackoffMs, this.random), retryAfter);
      ds.nextAttemptAt = now + delay;
      this.d.log.info(
        { id: st.id, destination: dest, deferred, attempts: ds.attempts, retryInMs: delay, detail: ds.lastError },
        'delivery deferred',
      );
    }
    this.evaluate(entry, true);
  }

  /** Periodic: retention, and FailoverOnly deadlines (a copy for the backup may have become due). */
  sweep(): void {
    if (this.stopped) return;
    const now = this.now();
    for (const entry of [...this.entries.values()]) {
      if (entry.closing) continue;
      if (now - entry.receivedAt > this.retentionMs) {
        if (entry.busy.size > 0 || entry.recovering) continue;
        this.expire(entry, now);
        continue;
      }
      // A backup copy may have become due (FailoverOnly: failover active, or the messageDeadline passed).
      if (entry.undecided && entry.busy.size === 0 && !entry.recovering && entry.pendingAt.has('primary') && this.backupMayBeDue(entry, now)) this.evaluate(entry, false);
    }
    this.updateGauges();
  }

  private backupMayBeDue(entry: Entry, now: number): boolean {
    const spec = this.d.config.spec;
    return this.d.failover.isActive || spec.failover.manual === 'Active' || now - entry.receivedAt >= this.deadlineMs;
  }

  private expire(entry: Entry, now: number): void {
    const st = entry.state;
    entry.closing = true;
    this.entries.delete(st.id);
    this.setPending(entry, new Destinations());
    const left: Record<string, string[]> = {};
    for (const dest of DESTINATIONS) {
      const ds = st.deliveries[dest];
      if (!ds) continue;
      for (const [rcpt, r] of Object.entries(ds.recipients)) {
        if (r.status !== 'pending') continue;
        ds.recipients[rcpt] = {
          status: 'failed',
          detail: `retention ${this.d.config.spec.relay.spool.retention} expired; last error: ${r.detail ?? ds.lastError ?? 'none'}`,
          at: now,
        };
        (left[dest] ??= []).push(rcpt);
      }
    }
    this.d.metrics.deadLettered.inc({ instance: this.instance, reason: 'retention' });
    this.d.log.warn(
      { id: st.id, messageId: st.messageId, undelivered: left },
      'message older than spool retention moved to dead/',
    );
    this.track(
      this.d.spool
        .moveToDead(st, 'retention expired', now, entry.message)
        .catch((e: unknown) => this.d.log.error({ id: st.id, err: (e as Error).message }, 'could not move to dead/')),
    );
  }

  private updateGauges(): void {
    for (const dest of DESTINATIONS)
      this.d.metrics.queueDepth.set({ instance: this.instance, destination: dest }, this.depth[dest]);
    this.d.metrics.spoolBytes.set({ instance: this.instance }, this.d.spool.bytes);
    this.d.metrics.commitBatches.set({ instance: this.instance }, this.d.spool.dirSyncBatches);
  }

  /** Stops starting deliveries, aborts in-flight ones and waits (bounded) for them and for state writes. */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.stopped = true;
    clearInterval(this.sweepTimer);
    clearTimeout(this.wakeTimer);
    clearTimeout(this.pumpTimer);
    for (const dest of DESTINATIONS) clearTimeout(this.resumeTimers[dest]);
    this.abort.abort();
    const deadline = Date.now() + timeoutMs;
    // Finishing deliveries start state writes of their own: wait until nothing is left (bounded).
    while (this.running.size > 0 && Date.now() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([...this.running]),
        new Promise((r) => (timer = setTimeout(r, deadline - Date.now()))),
      ]);
      clearTimeout(timer);
    }
  }

  /** For tests and the metrics: a copy of the in-memory state of one message. */
  inspect(id: string): MessageState | undefined {
    const e = this.entries.get(id);
    return e && (JSON.parse(JSON.stringify(e.peek())) as MessageState);
  }
}
