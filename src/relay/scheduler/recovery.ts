// After a crash: attempts that were in flight (journaled as started, no
// outcome) may or may not have reached the destination. The transport is
// asked when it can tell (alreadyDelivered: Gmail can, SMTP cannot);
// otherwise the recipient is retried and counted as a possible duplicate.
import type { Logger } from 'pino';
import type { Destination, Transport } from '../types.js';
import { DESTINATIONS } from './destinations.js';
import type { Entry } from './entry.js';
import { pendingRecipients } from './records.js';
import type { SchedulerReport } from './report.js';

export interface RecoveryDeps {
  transports: Record<Destination, Transport>;
  now: () => number;
  log: Logger;
  /** Told of the copies the backup already has and of the recipients that may receive the message twice. */
  report: Pick<SchedulerReport, 'copied' | 'possibleDuplicate'>;
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
        if (dest === 'backup') void d.report.copied(entry.message, [rcpt]);
      } else {
        d.report.possibleDuplicate(dest);
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
