// What the spool records of a message: its envelope and, per destination and
// recipient, how far delivery got. The trailer of a queue file holds it as it
// was at the 250; the journal holds every later change.
import type { Destination, Envelope } from '../types.js';

export type RecipientStatus = 'pending' | 'delivered' | 'failed' | 'excluded';

export interface RecipientState {
  status: RecipientStatus;
  /** Last reply or reason. */
  detail?: string;
  /** Exclusion rule name, for status excluded. */
  rule?: string;
  /** Backup only: why the policy decided a copy (dual-delivery, failover-active, message-deadline), audited with it. */
  reason?: string;
  /** Pending: the last answer was a 4xx to this recipient's RCPT TO from a server that took the session (452 mailbox full). */
  recipientDeferral?: true;
  /** Epoch ms of the final outcome. */
  at?: number;
}

export interface DestinationState {
  recipients: Record<string, RecipientState>;
  attempts: number;
  /** Epoch ms before which no attempt is made. */
  nextAttemptAt: number;
  lastError?: string;
  /** Set (in memory, by load()) when an attempt's outcome is unknown: it was in flight at a crash. */
  inFlightSince?: number;
  /**
   * Primary's record only: the message is on hold (Postfix `postsuper -h`), delivered nowhere,
   * neither to the primary nor to the backup, until released. Kept here so the journal keeps it.
   */
  hold?: { at: number; reason?: string };
}

export interface MessageState extends Envelope {
  version: 2;
  client: { address: string; helo: string };
  /** [lower-case name, value] of the headers exclusion rules look at. */
  headers: Array<[string, string]>;
  deliveries: Partial<Record<Destination, DestinationState>>;
  dead?: { at: number; reason: string };
}

export class SpoolFullError extends Error {
  constructor(
    message: string,
    readonly causeCode?: string,
  ) {
    super(message);
  }
}
