// The BackupReachable condition, from what the relays report (GET/PUT
// /admin/failover): the token grant each relay asks of Google's token endpoint
// every few minutes with its service account key, for spec.backup.gmail.
// canaryMailbox (`backupCheck`, GmailApi), and their own deliveries to Gmail
// (`backup`). The operator does not probe Google itself: what matters is
// whether the relays, from their network and with their credentials, get an
// answer, and a probe from the operator's Pod would say neither. A refused
// grant is False at once, naming what to fix; before any grant or delivery the
// condition is Unknown. A relay that cannot write
// its audit log pauses its copies to Gmail (write-ahead): False, AuditLogNotWritable.
import type { BackupCheckReport } from '../../api/relay/admin.js';
import type { Condition } from '../../api/v1alpha1/mailcontinuity.js';
import type { RelayTally } from './plan.js';

export const BACKUP_REACHABLE = 'BackupReachable';

const HOW = "judged from the relays' own deliveries to Gmail, not a probe";

export function backupReachableCondition(
  tally: Pick<RelayTally, 'answered' | 'backup' | 'auditFailing' | 'tokenGrants'> | undefined,
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
  const grants = tally.tokenGrants;
  const refused = grants?.refused[0];
  if (grants && refused) {
    return cond(
      'False',
      refused.reason,
      `${grants.refused.length} of ${tally.answered} relays got no access token from Google's token endpoint for ${refused.subject ?? 'the service account'} (scope gmail.insert): ${refused.message}; ${FIX[refused.reason] ?? 'see the relay logs (backup check)'}`,
    );
  }
  if (down > 0) {
    return cond(
      'False',
      'BackupDeliveriesFailing',
      `${down} of ${tally.answered} relays get no answer from Gmail: their last deliveries to it all failed (network, Google's token endpoint or the Gmail API); mail for Gmail waits in their spool (${HOW})`,
    );
  }
  if (grants && grants.granted > 0) {
    const who = grants.subject ?? 'the service account itself (set spec.backup.gmail.canaryMailbox to check the delegation too)';
    return cond('True', 'TokenGranted', `Google's token endpoint granted the relays an access token for ${who}, scope gmail.insert`);
  }
  if (up > 0) return cond('True', 'BackupAnswered', `Gmail answered the relays' last delivery attempts (${HOW})`);
  return cond(
    'Unknown',
    'NoBackupDeliveries',
    `no relay has delivered to Gmail since it started (in FailoverOnly mode, only during a failover): nothing is known yet (${HOW})`,
  );
}

/** What each refused grant asks the user to fix. */
const FIX: Record<string, string> = {
  KeyRejected:
    'the service account key was revoked or is not the service account\'s: create a new JSON key and put it in the Secret of spec.backup.gmail.serviceAccountSecretRef',
  DelegationMissing:
    'grant domain-wide delegation for https://www.googleapis.com/auth/gmail.insert to the service account\'s client ID (Google Admin console: Security > API controls)',
  UnknownUser: 'spec.backup.gmail.canaryMailbox is not a Workspace user: name a mailbox that exists',
  Unreachable: "the relays cannot reach Google's token endpoint (oauth2.googleapis.com:443): allow that egress",
  TokenError: 'see the relay logs (backup check) and the service account key in the Secret',
};

/** The relays' token grants, as the tally keeps them (no times: a new grant alone changes nothing). */
export interface TokenGrants {
  granted: number;
  /** The refusals, one per relay, in relay order. */
  refused: { reason: string; message: string; subject?: string }[];
  subject?: string;
}

/** The tally's part for the relays' last token grants (none reported: nothing). */
export function tokenGrants(reports: (BackupCheckReport | undefined)[]): { tokenGrants?: TokenGrants } {
  const checked = reports.filter((r): r is BackupCheckReport => r !== undefined);
  if (checked.length === 0) return {};
  const subject = checked.find((r) => r.subject)?.subject;
  return {
    tokenGrants: {
      granted: checked.filter((r) => r.reachable).length,
      refused: checked
        .filter((r) => !r.reachable)
        .map((r) => ({ reason: r.reason, message: r.message, ...(r.subject ? { subject: r.subject } : {}) })),
      ...(subject ? { subject } : {}),
    },
  };
}
