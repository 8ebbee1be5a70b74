// The BackupReachable condition, from what the relays report of their own
// deliveries to Gmail (GET/PUT /admin/failover: `backup`). The operator does
// not probe Google itself: what matters is whether the relays, from their
// network and with their credentials, get an answer, and a probe from the
// operator's Pod would say neither. So the condition speaks only of delivery
// attempts that happened: before any, it is Unknown. A relay that cannot write
// its audit log pauses its copies to Gmail (write-ahead): False, AuditLogNotWritable.
import type { Condition } from '../../api/v1alpha1/mailcontinuity.js';
import type { RelayTally } from './plan.js';

export const BACKUP_REACHABLE = 'BackupReachable';

const HOW = "judged from the relays' own deliveries to Gmail, not a probe";

export function backupReachableCondition(
  tally: Pick<RelayTally, 'answered' | 'backup' | 'auditFailing'> | undefined,
): Omit<Condition, 'lastTransitionTime' | 'observedGeneration'> {
  const cond = (status: 'True' | 'False' | 'Unknown', reason: string, message: string) => ({
    type: BACKUP_REACHABLE,
    status,
    reason,
    message,
  });
  if (!tally) return cond('Unknown', 'RelaysNotReporting', `no relay has answered the operator yet (${HOW})`);
  const { up, down } = tally.backup;
  // Fail closed: a copy to Gmail leaves only after its audit record is on disk.
  if ((tally.auditFailing ?? 0) > 0) {
    return cond(
      'False',
      'AuditLogNotWritable',
      `${tally.auditFailing} of ${tally.answered} relays cannot write their audit log (spool volume full or failing): their copies to Gmail are paused until it can be written; intake and delivery to the primary go on (relay_audit_write_failing)`,
    );
  }
  if (down > 0) {
    return cond(
      'False',
      'BackupDeliveriesFailing',
      `${down} of ${tally.answered} relays get no answer from Gmail: their last deliveries to it all failed (network, Google's token endpoint or the Gmail API); mail for Gmail waits in their spool (${HOW})`,
    );
  }
  if (up > 0) return cond('True', 'BackupAnswered', `Gmail answered the relays' last delivery attempts (${HOW})`);
  return cond(
    'Unknown',
    'NoBackupDeliveries',
    `no relay has delivered to Gmail since it started (in FailoverOnly mode, only during a failover): nothing is known yet (${HOW})`,
  );
}
