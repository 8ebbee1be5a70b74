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
     * This replica's share of each Gmail mailbox's quota units per minute (GmailApi backup): the
     * operator splits GMAIL_MAILBOX_UNITS_PER_MINUTE across the replicas (mailboxQuotaShare), as
     * it splits the replay rate. Absent: unchanged (a relay starts with the whole budget).
     */
    gmailUnitsPerMinute: z.number().int().min(25).max(15000).optional(),
    /**
     * True during a maintenance window (spec.failover.schedule): deliver nothing to
     * the primary, keep it in the spool for the replay at the window's end. Absent: false.
     */
    holdPrimary: z.boolean().optional(),
  })
  .strict();
export type FailoverUpdate = z.infer<typeof FailoverUpdate>;

/** Gmail's quota: 15,000 units per user (mailbox) per minute, whatever the number of clients. */
export const GMAIL_USER_QUOTA_PER_MINUTE = 15_000;
/**
 * What the relays of one MailContinuity spend on one mailbox together: this many units a minute
 * and one burst, so that any minute holds at most 14,500 units, below Gmail's 15,000.
 */
export const GMAIL_MAILBOX_UNITS_PER_MINUTE = 13_500;
export const GMAIL_MAILBOX_BURST_UNITS = 1_000;

/** One replica's share of each mailbox's units per minute when `replicas` relays import (at least one import, 25 units). */
export function mailboxQuotaShare(replicas: number, budget: number = GMAIL_MAILBOX_UNITS_PER_MINUTE): number {
  return Math.max(25, Math.floor(budget / Math.max(1, Math.floor(replicas))));
}

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
  /** The relay's last token grant against Google's token endpoint (GmailApi; absent before the first). */
  backupCheck?: BackupCheckReport;
  /** Holding mail for the primary (a maintenance window); absent from a relay that predates windows. */
  holdPrimary?: boolean;
  /** Units per mailbox per minute this replica spends at Gmail now (GmailApi backup only). */
  gmailUnitsPerMinute?: number;
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

/** One token grant of the relay's backup check (relay/control/backup-check.ts). */
export interface BackupCheckReport {
  reachable: boolean;
  /** TokenGranted, or why not: KeyRejected, DelegationMissing, UnknownUser, Unreachable, TokenError. */
  reason: string;
  message: string;
  /** ISO time of the grant. */
  checkedAt: string;
  /** The mailbox impersonated (spec.backup.gmail.canaryMailbox); absent: the service account itself. */
  subject?: string;
}
