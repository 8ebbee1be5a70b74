// What the scheduler tells about its work: metrics, audit records and log
// lines. Decides nothing and changes no state.
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/log.js';
import type { RelayMetrics } from '../metrics.js';
import { WITHHELD_RECIPIENT_DEFERRAL } from '../policy/policy.js';
import type { Spool } from '../spool/spool.js';
import type { DestinationState, MessageState } from '../spool/state.js';
import type { Destination, SpooledMessage } from '../types.js';
import { DESTINATIONS } from './destinations.js';
import type { AttemptRecord } from './records.js';

export class SchedulerReport {
  /** The last write-ahead audit record could not be written: copies to the backup are paused. */
  auditFailing = false;

  constructor(
    private readonly d: { instance: string; metrics: RelayMetrics; audit: AuditLog; log: Logger; spool: Pick<Spool, 'bytes' | 'dirSyncBatches'> },
  ) {}

  private get labels(): { instance: string } {
    return { instance: this.d.instance };
  }

  failoverActive(active: boolean): void {
    this.d.metrics.failoverActive.set(this.labels, active ? 1 : 0);
  }

  /** The write-ahead audit record before a copy to Google; false (copies pause, the gauge says so) when it cannot be written. */
  async copyIntent(st: MessageState, message: SpooledMessage, recipients: string[]): Promise<boolean> {
    // Why each copy is due (the policy's decision, kept in the recipient's backup state).
    const reasons = [...new Set(recipients.map((r) => st.deliveries.backup?.recipients[r]?.reason ?? 'unrecorded'))].join(',');
    try {
      await this.d.audit.intent(message, recipients, reasons);
      this.d.metrics.auditRecords.inc({ ...this.labels, action: 'copy-intent' });
      this.d.metrics.auditWriteFailing.set(this.labels, 0);
      if (this.auditFailing) this.d.log.info('audit log written again: copies to the backup resume');
      this.auditFailing = false;
      return true;
    } catch (e) {
      this.d.metrics.auditWriteFailing.set(this.labels, 1);
      this.auditFailing = true;
      this.d.log.error({ id: st.id, messageId: st.messageId, err: (e as Error).message }, 'audit log cannot be written: copies to the backup paused');
      return false;
    }
  }

  /** Recipients of `message` the backup has (an audit record for each copy to Google). */
  copied(message: SpooledMessage, recipients: string[]): Promise<void> {
    this.d.metrics.auditRecords.inc({ ...this.labels, action: 'copied-to-backup' });
    return this.d.audit.record(message, recipients, 'copied-to-backup');
  }

  excluded(st: MessageState, message: SpooledMessage, byRule: Map<string, string[]>): void {
    for (const [rule, rcpts] of byRule) {
      this.d.metrics.auditRecords.inc({ ...this.labels, action: 'excluded' });
      void this.d.audit.record(message, rcpts, 'excluded', rule);
      this.d.log.info({ id: st.id, messageId: st.messageId, rule, recipients: rcpts }, 'kept out of the backup by exclusion rule');
    }
  }

  /** FailoverOnly copies withheld: the deadline passed, but the working primary defers these recipients alone. */
  withheld(st: MessageState, message: SpooledMessage, recipients: string[]): void {
    if (recipients.length === 0) return;
    this.d.metrics.auditRecords.inc({ ...this.labels, action: 'withheld' });
    void this.d.audit.record(message, recipients, 'withheld', undefined, 'backup', WITHHELD_RECIPIENT_DEFERRAL);
    this.d.log.info({ id: st.id, messageId: st.messageId, recipients }, 'no copy to the backup: the primary answers and defers only these recipients (copyRecipientDeferrals is false)');
  }

  /** One attempt's outcomes: counts, the recipients refused for good, the latency and the audit of copies to the backup. */
  attempt(st: MessageState, message: SpooledMessage, dest: Destination, rec: AttemptRecord, now: number): void {
    for (const outcome of rec.statuses) this.d.metrics.deliveries.inc({ ...this.labels, destination: dest, outcome });
    for (const { recipient, detail } of rec.failed) {
      this.d.metrics.deadLettered.inc({ ...this.labels, reason: 'rejected' });
      this.d.log.warn({ id: st.id, messageId: st.messageId, destination: dest, recipient, detail }, 'recipient refused for good (dead-letter record)');
    }
    if (rec.delivered.length === 0) return;
    this.d.metrics.latency.observe({ ...this.labels, destination: dest }, (now - st.receivedAt) / 1000);
    if (dest === 'backup') void this.copied(message, rec.delivered);
  }

  deferred(st: MessageState, dest: Destination, ds: DestinationState, rec: AttemptRecord): void {
    this.d.log.info({ id: st.id, destination: dest, deferred: rec.deferred, attempts: ds.attempts, retryInMs: rec.retryInMs, detail: ds.lastError }, 'delivery deferred');
  }

  possibleDuplicate(dest: Destination): void {
    this.d.metrics.possibleDuplicates.inc({ ...this.labels, destination: dest });
  }

  movedToDead(st: MessageState): void {
    this.d.log.warn({ id: st.id, messageId: st.messageId }, 'message moved to dead/: a destination refused it for good');
  }

  expired(st: MessageState, undelivered: Partial<Record<Destination, string[]>>): void {
    this.d.metrics.deadLettered.inc({ ...this.labels, reason: 'retention' });
    this.d.log.warn({ id: st.id, messageId: st.messageId, undelivered }, 'message older than spool retention moved to dead/');
  }

  /** A spool write that finishes a message failed. */
  spoolError(st: MessageState, msg: string, e: unknown): void {
    this.d.log.error({ id: st.id, err: (e as Error).message }, msg);
  }

  gauges(depth: Record<Destination, number>): void {
    for (const dest of DESTINATIONS) this.d.metrics.queueDepth.set({ ...this.labels, destination: dest }, depth[dest]);
    this.d.metrics.spoolBytes.set(this.labels, this.d.spool.bytes);
    this.d.metrics.commitBatches.set(this.labels, this.d.spool.dirSyncBatches);
  }
}
