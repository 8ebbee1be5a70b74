// After a crash: attempts that were in flight (journaled as started, no
// outcome) may or may not have reached the destination. The transport is
// asked when it can tell (alreadyDelivered: Gmail can, SMTP cannot);
// otherwise the recipient is retried and counted as a possible duplicate.
import type { Logger } from 'pino';
import type { Destination, Transport } from '../types.js';
import { DESTINATIONS } from './destinations.js';
import type { Entry } from './entry.js';
import { pendingRecipients } from './records.js';

export interface RecoveryDeps {
  transports: Record<Destination, Transport>;
  now: () => number;
  log: Logger;
  /** The destination already has the message for `recipients`. */
  found: (entry: Entry, dest: Destination, recipients: string[]) => void;
  /** The recipient is retried and may receive the message twice. */
  possibleDuplicate: (dest: Destination) => void;
}

/** Settles the in-flight attempts of `entry`; true when its state changed. */
export async function recoverAttempts(entry: Entry, d: RecoveryDeps): Promise<boolean> {
  let dirty = false;
  for (const dest of DESTINATIONS) {
    const ds = entry.state.deliveries[dest];
    if (!ds?.inFlightSince) continue;
    delete ds.inFlightSince;
    dirty = true;
    const pending = pendingRecipients(ds);
    const t = d.transports[dest];
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
        ds.recipients[rcpt] = { status: 'delivered', detail: 'found at destination after restart', at: d.now() };
        d.found(entry, dest, [rcpt]);
      } else {
        d.possibleDuplicate(dest);
      }
    }
    const unknown = pending.filter((r) => ds.recipients[r]?.status === 'pending');
    if (unknown.length > 0) {
      d.log.warn(
        { id: entry.state.id, messageId: entry.state.messageId, destination: dest, recipients: unknown },
        'delivery was in flight when the relay stopped; retrying (the destination may receive it twice)',
      );
    }
  }
  return dirty;
}
