// The periodic sweep (Postfix's qmgr scans its deferred queue on a timer):
// messages older than the spool's retention end in dead/, and a FailoverOnly
// message whose backup copy may have become due (failover active, or its
// messageDeadline passed) is looked at again.
import type { Entry } from './entry.js';

export interface SweepRules {
  retentionMs: number;
  /** FailoverOnly's messageDeadline. */
  deadlineMs: number;
  /** Failover is active (or set Active by hand): a copy is due now. */
  backupDue: boolean;
}

export type SweepAction = 'expire' | 'recheck';

/**
 * What to do with each message, decided as the sweep reaches it (an action
 * taken on one message may start deliveries of the next ones, which are then
 * left alone).
 */
export function* sweepActions(entries: Iterable<Entry>, now: number, rules: SweepRules): Generator<[SweepAction, Entry]> {
  for (const entry of [...entries]) {
    if (entry.closing) continue;
    const idle = entry.busy.size === 0 && !entry.recovering;
    if (now - entry.receivedAt > rules.retentionMs) {
      if (idle) yield ['expire', entry];
      continue;
    }
    if (entry.undecided && idle && entry.pendingAt.has('primary') && (rules.backupDue || now - entry.receivedAt >= rules.deadlineMs)) yield ['recheck', entry];
  }
}
