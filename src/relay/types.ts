// The narrow interfaces between the relay's parts (in Postfix's spirit:
// inbound -> spool -> scheduler -> transports/{exchange,gmail}).

/** The two destinations of a message. */
export type Destination = 'primary' | 'backup';

/** What the spool and every part after it know of a message's envelope. */
export interface Envelope {
  /** Spool id: sortable by arrival time. */
  id: string;
  mailFrom: string;
  rcptTo: string[];
  /** Message-ID header without angle brackets, if the message had one. */
  messageId?: string;
  sha256: string;
  size: number;
  /** Epoch milliseconds when the relay answered 250. */
  receivedAt: number;
  /** The client's address (behind a load balancer, the one its PROXY header reported). */
  clientAddress?: string;
}

/**
 * A message as the spool holds it: raw RFC 5322 with CRLF line ends, `size` bytes.
 * Transports take `body` when it is set (the spool keeps recent messages in
 * memory, within a budget) and otherwise read bytes [0, size) of `path`.
 */
export interface SpooledMessage extends Envelope {
  path: string;
  /** The message bytes while they are cached in memory; may be dropped at any time. */
  body?: Buffer;
}

export type RecipientOutcome =
  | { recipient: string; status: 'delivered'; detail: string }
  /**
   * A 4xx, a connection failure, a 429/5xx from Google: try again later. `scope: 'recipient'`:
   * the server took the session and the sender and answered this recipient's RCPT TO with a 4xx
   * (452 mailbox full): a problem of that mailbox, not an outage of the server.
   */
  | { recipient: string; status: 'deferred'; detail: string; retryAfterMs?: number; scope?: 'recipient' }
  /** A 5xx or a 4xx from Google that will never succeed: dead-letter and record. */
  | { recipient: string; status: 'failed'; detail: string };

/** One delivery attempt of one message to some of its recipients at one destination. */
export interface Transport {
  readonly destination: Destination;
  deliver(message: SpooledMessage, recipients: string[], signal?: AbortSignal): Promise<RecipientOutcome[]>;
  /**
   * For a recipient whose earlier attempt may or may not have completed (the
   * relay crashed while it was in flight): true when the destination already
   * has the message. Gmail answers with an rfc822msgid: search; SMTP cannot
   * tell and returns false.
   */
  alreadyDelivered?(message: SpooledMessage, recipient: string): Promise<boolean>;
  /** Gmail API: the quota units per mailbox per minute this relay spends (its share, set by the operator). */
  mailboxQuota?(): number;
  setMailboxQuota?(unitsPerMinute: number): void;
  /** Reads its credentials again (their mounted Secret changed); throws, keeping the old ones, when they cannot be used. */
  reloadSecrets?(): Promise<void>;
  /** Deliveries the transport wants in flight now (Gmail: from Google's latency); the configured concurrency otherwise. */
  window?(): number;
  close(): Promise<void>;
}
