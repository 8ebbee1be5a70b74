// Delivery queues, in the spirit of Postfix's qmgr: one queue per destination
// with a concurrency window, exponential backoff with jitter for deferrals
// (4xx, connection trouble, retryAfterMs from a transport), permanent failure
// records for 5xx, and a token bucket that paces the replay to the primary
// after an outage. Only envelopes and delivery state live in memory; bodies
// are streamed from the spool file by the transports.
//
// Parts: entry.ts (a message, frozen while it waits), queues.ts (ready FIFOs,
// retry timers), destination-health.ts (suspension of a destination that does
// not answer), release.ts (what waits for the primary goes when it answers
// again), backup.ts (backup copies due), records.ts (what an attempt
// writes, the retry's backoff), recovery.ts (attempts in flight at a crash),
// replay.ts (the paced replay after a failover, and its counts), sweep.ts
// (retention, FailoverOnly deadlines), report.ts (metrics, audit, log lines).
//
// Data flows one way: the failover state is an input (its 'change' event); the
// scheduler publishes its own numbers (facts()) for the admin snapshot.
import type { Logger } from 'pino';
import type { RelayConfig } from '../../api/relay/config.js';
import { parseDuration } from '../../api/v1alpha1/formats.js';
import { backoffMs } from '../../lib/backoff.js';
import { Tracked } from '../../lib/tracked.js';
import type { AuditLog } from '../audit/log.js';
import type { DeliveryFacts, FailoverState } from '../control/failover-state.js';
import type { RelayMetrics } from '../metrics.js';
import { messageDeadlineMs } from '../policy/policy.js';
import type { Spool } from '../spool/spool.js';
import type { MessageState } from '../spool/state.js';
import type { Destination, RecipientOutcome, SpooledMessage, Transport } from '../types.js';
import { decideBackupCopies } from './backup.js';
import { currentPolicyHeaders, gateBackupCopies, gateNeeded } from './backup-gate.js';
import { DestinationHealth, isSessionFailure } from './destination-health.js';
import { DESTINATIONS } from './destinations.js';
import { Entry } from './entry.js';
import { Messages } from './messages.js';
import { DeliveryQueues } from './queues.js';
import { expireRecipients, pendingDestinations, pendingRecipients, recordOutcomes } from './records.js';
import { recoverAttempts } from './recovery.js';
import { isHeld, QueueOps } from './queue-ops.js';
import { releaseWaiting } from './release.js';
import { Replay } from './replay.js';
import { SchedulerReport } from './report.js';
import { sweepActions, type SweepRules } from './sweep.js';

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

/** A copy whose write-ahead audit record could not be written waits this long before it is tried again. */
const AUDIT_RETRY_MS = 10_000;

const perDestination = <T>(f: (d: Destination) => T): Record<Destination, T> => ({ primary: f('primary'), backup: f('backup') });

export class Scheduler {
  private readonly entries = new Messages();
  private readonly queues: DeliveryQueues;
  private readonly health: Record<Destination, DestinationHealth>;
  private readonly inflight: Record<Destination, number> = { primary: 0, backup: 0 };
  private readonly running = new Tracked();
  private readonly abort = new AbortController();
  private readonly concurrency: Record<Destination, number>;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly sweepRules: Omit<SweepRules, 'backupDue'>;
  private readonly replay: Replay;
  private readonly report: SchedulerReport;
  private readonly backoff: (attempts: number) => number;
  private sweepTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly d: SchedulerDeps) {
    this.now = d.now ?? Date.now;
    this.random = d.random ?? Math.random;
    const t = d.config.tuning;
    this.concurrency = { primary: t.primaryConcurrency, backup: t.backupConcurrency };
    this.health = perDestination(
      (dest) =>
        new DestinationHealth(dest, {
          minBackoffMs: t.minBackoffMs,
          maxBackoffMs: t.maxBackoffMs,
          random: this.random,
          log: d.log,
          onResume: () => this.pump(),
          // What waits for the primary goes as soon as it answers again (release.ts). Not the
          // backup: its retries include Gmail's pacing and quota hints, which keep their time.
          onRecovered: () => dest === 'primary' && releaseWaiting(this.queues, dest, d.log),
        }),
    );
    this.queues = new DeliveryQueues(this.now, (id) => this.entries.get(id), () => this.pump());
    this.sweepRules = { retentionMs: parseDuration(d.config.spec.relay.spool.retention), deadlineMs: messageDeadlineMs(d.config.spec) };
    this.backoff = (n) => backoffMs(n, t.minBackoffMs, t.maxBackoffMs, this.random);
    this.report = new SchedulerReport({ instance: d.config.instance, metrics: d.metrics, audit: d.audit, log: d.log, spool: d.spool });
    this.replay = new Replay(this.now, () => this.pump());
    // The failover state is an input: the scheduler reacts to its changes.
    d.failover.on('change', (snap, wasActive) => {
      this.report.failoverActive(snap.active);
      if (snap.active) {
        if (!wasActive) this.replay.newFailover();
        this.sweep();
        // Paced from the start: when the primary answers again before the operator ends
        // the failover, the relay must not flood it at full concurrency.
        this.setReplayRate(snap.replayMaxMessagesPerSecond);
      } else if (wasActive) this.startReplay(snap.replayMaxMessagesPerSecond);
      else if (this.replay.active) this.startReplay(snap.replayMaxMessagesPerSecond);
    });
    this.report.failoverActive(d.failover.isActive);
  }

  /** The scheduler's own numbers, for the admin snapshot (the operator sums them over the relays). */
  facts(): DeliveryFacts {
    return {
      messagesToBackup: this.replay.toBackup,
      messagesReplayed: this.replay.replayed,
      replaying: this.replay.active,
      queuedPrimary: this.entries.depth.primary,
      queuedBackup: this.entries.depth.backup,
      backup: this.health.backup.reachability,
      auditFailing: this.report.auditFailing,
    };
  }

  start(): void {
    this.sweepTimer = setInterval(() => this.sweep(), this.d.config.tuning.sweepIntervalMs);
    this.sweepTimer.unref();
    this.report.gauges(this.entries.depth);
  }

  /**
   * The intake backpressure signal: deliveries in flight plus new messages
   * waiting for their first attempt at a destination that is up. Deferred mail
   * waiting for a retry, and anything for a destination that is down, does not
   * count: an outage of Exchange must not stop intake, that is what the spool is for.
   */
  backlog(): number {
    let n = this.inflight.primary + this.inflight.backup;
    for (const dest of DESTINATIONS) if (!this.isDown(dest) && !this.held(dest)) n += this.queues.ready[dest].freshLength;
    return n;
  }

  /** Mail for the primary waits during a maintenance window (the failover state's holdPrimary). */
  private held(dest: Destination): boolean {
    return dest === 'primary' && this.d.failover.holdsPrimary;
  }

  /** A destination whose last attempts all deferred (Postfix: "delivery temporarily suspended"). */
  isDown(dest: Destination): boolean {
    return this.health[dest].isDown;
  }

  /** Messages with recipients still pending at `dest`. */
  queueDepth(dest: Destination): number {
    return this.entries.depth[dest];
  }

  get size(): number {
    return this.entries.size;
  }

  /** Paces primary deliveries at `perSecond` until the primary queue is empty (null: no pacing). */
  setReplayRate(perSecond: number | null): void {
    this.replay.setRate(perSecond);
    this.pump();
  }

  get replayActive(): boolean {
    return this.replay.active;
  }

  /** The primary is back: retry everything waiting for it now (like `postqueue -f`), paced. */
  private startReplay(rate: number): void {
    this.health.primary.resume();
    this.setReplayRate(rate);
    // Thawed one at a time as the pacing lets them go.
    const moved = this.queues.retryNow('primary');
    this.d.log.info({ replay: moved, maxMessagesPerSecond: rate }, 'failover ended: replaying deferred mail to the primary');
    this.pump();
  }

  /** Takes a committed message (from inbound, with its body in memory if cached, or from the spool at start). */
  add(state: MessageState, opts: { recovered?: boolean; message?: SpooledMessage } = {}): void {
    const entry = new Entry(state, opts.message ?? this.d.spool.toMessage(state), this.d.spool);
    entry.fromIntake = !opts.recovered;
    this.entries.add(entry);
    if (opts.recovered) void this.recover(entry);
    else this.evaluate(entry, false);
  }

  /** After a crash: attempts that were in flight may or may not have reached the destination. */
  private async recover(entry: Entry): Promise<void> {
    entry.recovering = true;
    try {
      const dirty = await recoverAttempts(entry, {
        transports: this.d.transports,
        now: this.now,
        log: this.d.log,
        report: this.report,
      });
      this.evaluate(entry, dirty);
    } finally {
      entry.recovering = false;
    }
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
    const copies = decideBackupCopies(this.d.config.spec, st, entry.facts, this.d.failover.isActive, now);
    entry.undecided = copies.undecided;
    const dirty = dirtyIn || copies.dirty;
    this.report.excluded(st, entry.message, copies.excluded);
    this.report.withheld(st, entry.message, copies.withheld.filter((r) => !entry.withheldAudited.has(r) && entry.withheldAudited.add(r)));
    const { pendingAt, failed } = pendingDestinations(st);
    this.entries.setPending(entry, pendingAt);
    if (pendingAt.size === 0 && entry.busy.size === 0) {
      this.entries.close(entry);
      const done = failed
        ? this.d.spool.moveToDead(st, 'rejected by a destination (see deliveries)', now, entry.message).then(() => this.report.movedToDead(st))
        : this.d.spool.remove(st, entry.message);
      this.running.add(done.catch((e: unknown) => this.report.spoolError(st, 'could not finish spool entry', e)));
      this.report.gauges(this.entries.depth);
      this.pump();
      return;
    }
    if (dirty) this.running.add(this.d.spool.saveState(st).catch(() => undefined));
    if (this.stopped) return;
    // On hold (the admin API): delivered nowhere until released.
    if (isHeld(st)) return entry.freeze();
    // Only waiting (a retry later, or a destination that is down): frozen, the body read from the file when its time comes.
    if (!this.queues.enqueue(entry, this.now(), (dest) => this.isDown(dest))) entry.freeze();
    this.pump();
  }

  /** The states of the messages in the queue (what the spool journal's compaction writes). */
  states(): Iterable<MessageState> {
    return this.entries.states();
  }

  /** Messages frozen while they wait (for tests and the metrics). */
  get frozenCount(): number {
    return this.entries.frozenCount;
  }

  private pump(): void {
    if (this.stopped) return;
    for (const dest of DESTINATIONS) {
      if (this.health[dest].isSuspended(this.now())) continue;
      // A maintenance window: mail for the primary waits in the spool until it ends (then the replay).
      if (this.held(dest)) continue;
      // A destination that is down gets one probing delivery at a time.
      const window = this.isDown(dest) ? 1 : (this.d.transports[dest].window?.() ?? this.concurrency[dest]);
      while (this.inflight[dest] < window && this.queues.ready[dest].length > 0) {
        if (dest === 'primary' && !this.replay.admit()) break;
        const id = this.queues.ready[dest].take()!;
        const entry = this.entries.get(id);
        if (!entry || entry.closing) continue;
        entry.queued.delete(dest);
        if (entry.busy.has(dest) || !entry.pendingAt.has(dest) || isHeld(entry.state)) continue;
        this.running.add(this.deliver(entry, dest));
      }
    }
    if (this.replay.active && !this.d.failover.isActive && this.entries.depth.primary === 0 && this.inflight.primary === 0) {
      this.replay.setRate(null);
      this.d.log.info('replay to the primary finished');
    }
  }

  /** The recipients still to copy to the backup under the current rules (backup-gate.ts); the others are audited as excluded. */
  private async gate(entry: Entry, recipients: string[]): Promise<string[]> {
    const rules = this.d.config.spec.policy.exclude;
    if (!gateNeeded(rules, entry.fromIntake)) return recipients;
    const { send, excluded } = gateBackupCopies(rules, entry.state, await currentPolicyHeaders(rules, entry.message), recipients, this.now());
    this.report.excluded(entry.state, entry.message, excluded);
    return send;
  }

  private async deliver(entry: Entry, dest: Destination): Promise<void> {
    const st = entry.state;
    const ds = st.deliveries[dest]!;
    let recipients = pendingRecipients(ds);
    entry.busy.add(dest);
    this.inflight[dest]++;
    let outcomes: RecipientOutcome[] = [];
    try {
      if (dest === 'backup') recipients = await this.gate(entry, recipients);
      if (dest === 'backup' && recipients.length > 0 && !(await this.report.copyIntent(st, entry.message, recipients))) {
        outcomes = recipients.map((r) => ({ recipient: r, status: 'deferred', detail: 'audit log cannot be written: copies to the backup paused', retryAfterMs: AUDIT_RETRY_MS }));
      } else if (recipients.length > 0) {
        await this.d.spool.journal.attempt(st.id, dest, ds.attempts + 1).catch((e: unknown) => {
          this.d.log.warn({ id: st.id, err: (e as Error).message }, 'could not journal a delivery attempt');
        });
        outcomes = await this.d.transports[dest].deliver(entry.message, recipients, this.abort.signal);
      }
    } catch (e) {
      outcomes = recipients.map((r) => ({ recipient: r, status: 'deferred', detail: `transport error: ${(e as Error).message}` }));
    } finally {
      this.inflight[dest]--;
      entry.busy.delete(dest);
    }
    if (recipients.length === 0) return this.evaluate(entry, true); // every copy excluded under the current rules
    if (this.stopped && outcomes.every((o) => o.status === 'deferred')) return;
    const now = this.now();
    const rec = recordOutcomes(ds, recipients, outcomes, now, this.backoff);
    this.report.attempt(st, entry.message, dest, rec, now);
    if (rec.delivered.length > 0) this.replay.countDelivered(dest, this.d.failover.isActive);
    this.d.spool.journal.finished(st.id, dest);
    this.health[dest].noteAttempt(rec.delivered.length === 0 && rec.deferred === recipients.length && isSessionFailure(outcomes), now);
    if (rec.retryInMs !== undefined) this.report.deferred(st, dest, ds, rec);
    this.evaluate(entry, true);
  }

  /** Periodic: retention, and FailoverOnly deadlines (a copy for the backup may have become due). */
  sweep(): void {
    if (this.stopped) return;
    const now = this.now();
    const backupDue = this.d.failover.isActive || this.d.config.spec.failover.manual === 'Active';
    for (const [action, entry] of sweepActions(this.entries.values(), now, { ...this.sweepRules, backupDue })) {
      if (action === 'expire') this.expire(entry, now);
      else this.evaluate(entry, false);
    }
    this.report.gauges(this.entries.depth);
  }

  private expire(entry: Entry, now: number): void {
    const st = entry.state;
    this.entries.close(entry);
    this.report.expired(st, expireRecipients(st, this.d.config.spec.relay.spool.retention, now));
    this.running.add(this.d.spool.moveToDead(st, 'retention expired', now, entry.message).catch((e: unknown) => this.report.spoolError(st, 'could not move to dead/', e)));
  }

  /** Stops starting deliveries, aborts in-flight ones and waits (bounded) for them and for state writes. */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.stopped = true;
    clearInterval(this.sweepTimer);
    this.queues.stop();
    this.replay.stop();
    for (const dest of DESTINATIONS) this.health[dest].stop();
    this.abort.abort();
    // Finishing deliveries start state writes of their own: wait until nothing is left (bounded).
    await this.running.settled(timeoutMs);
  }

  /** For tests and the metrics: a copy of the in-memory state of one message. */
  inspect(id: string): MessageState | undefined {
    return this.entries.copy(id);
  }

  /** The queue operations of the admin API (queue-ops.ts). */
  queueOps(): QueueOps {
    return new QueueOps({
      entries: this.entries,
      queues: this.queues,
      spool: this.d.spool,
      running: this.running,
      now: this.now,
      evaluate: (entry) => this.evaluate(entry, false),
      pump: () => this.pump(),
      gauges: () => this.report.gauges(this.entries.depth),
    });
  }
}
