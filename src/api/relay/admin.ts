// The relay's admin API, the other half of the operator<->relay contract
// (config.ts is the first): the operator PUTs a FailoverUpdate to each relay
// replica's /admin/failover (bearer token) and reads back a FailoverSnapshot.
// The same call carries the drain instruction of a scale-down: a replica whose
// pod is about to be removed is told `draining: true`; it then takes no new
// mail, answers /readyz 503, and keeps delivering what its spool holds until
// the operator sees it empty and lowers the StatefulSet's replicas.
import { z } from 'zod';

export const ADMIN_FAILOVER_PATH = '/admin/failover';

/** The body of PUT /admin/failover. */
export const FailoverUpdate = z
  .object({
    active: z.boolean(),
    maxMessagesPerSecond: z.number().int().min(1).max(10000).optional(),
    /**
     * True: this replica is being removed (spec.relay.replicas was lowered): stop
     * taking mail, deliver what the spool holds. False: take mail again (the
     * scale-down was cancelled). Absent: unchanged (relays start not draining).
     */
    draining: z.boolean().optional(),
    /**
     * True during a maintenance window (spec.failover.schedule): deliver nothing to
     * the primary, keep it in the spool for the replay at the window's end. Absent: false.
     */
    holdPrimary: z.boolean().optional(),
  })
  .strict();
export type FailoverUpdate = z.infer<typeof FailoverUpdate>;

/** The answer of GET and PUT /admin/failover: one replica's state and numbers. */
export interface FailoverSnapshot {
  active: boolean;
  /** ISO time of the last change, or null when never changed since start. */
  since: string | null;
  /** Replay rate to the primary (messages per second for this replica). */
  replayMaxMessagesPerSecond: number;
  /** Messages delivered to the backup since failover last became active (on this replica, since its start). */
  messagesToBackup: number;
  /** Replay in progress: the primary's queue is being drained at the replay rate. */
  replaying: boolean;
  /** Messages delivered to the primary, paced, since failover last became active. */
  messagesReplayed: number;
  /** Messages still waiting for the primary. */
  queuedPrimary: number;
  /** Messages still waiting for the backup. */
  queuedBackup: number;
  /** The backup as this relay's deliveries see it (see BackupHealth). */
  backup: BackupHealth;
  /**
   * The audit log could not be written at the last copy's write-ahead record: copies to
   * the backup are paused until it can (relay_audit_write_failing). Absent from a relay that predates it.
   */
  auditFailing?: boolean;
  /**
   * The audit log could not be written at the last copy's write-ahead record: copies to
   * the backup are paused until it can (relay_audit_write_failing). Absent from a relay that predates it.
   */
  auditFailing?: boolean;
  /** Holding mail for the primary (a maintenance window); absent from a relay that predates windows. */
  holdPrimary?: boolean;
  /** Told to drain (FailoverUpdate.draining); absent from a relay that predates draining. */
  draining?: boolean;
  /**
   * SMTP sessions still open: a session that passed MAIL before the drain began may
   * still be sending a message that will be queued when it ends.
   */
  smtpSessions?: number;
}

/**
 * 'unknown' before the relay's first delivery attempt to the backup since it
 * started; 'down' while its last attempts all failed without an answer
 * (delivery suspended); 'up' once an attempt got an answer.
 */
export type BackupHealth = 'unknown' | 'up' | 'down';
