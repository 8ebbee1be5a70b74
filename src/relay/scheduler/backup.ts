// Backup decisions for a message's recipients that have none yet (the policy
// decides, decideBackup; this records its answer in the message's state).
import { decideBackup, type MessageFacts, type PolicySpec } from '../policy/policy.js';
import type { MessageState } from '../spool/state.js';

export interface BackupCopies {
  /** The state changed (a copy became pending, or a recipient was excluded). */
  dirty: boolean;
  /** Some recipient has no decision yet (FailoverOnly: the sweep looks again). */
  undecided: boolean;
  /** Recipients kept out of the backup, by exclusion rule. */
  excluded: Map<string, string[]>;
  /** FailoverOnly recipients whose deadline passed while the working primary defers them alone (no copy yet). */
  withheld: string[];
}

export function decideBackupCopies(spec: PolicySpec, st: MessageState, facts: MessageFacts, failoverActive: boolean, now: number): BackupCopies {
  const out: BackupCopies = { dirty: false, undecided: false, excluded: new Map(), withheld: [] };
  const primary = st.deliveries.primary!;
  for (const rcpt of st.rcptTo) {
    if (st.deliveries.backup?.recipients[rcpt]) continue;
    const p = primary.recipients[rcpt];
    const decision = decideBackup(spec, facts, rcpt, {
      failoverActive,
      now,
      primaryDelivered: p !== undefined && p.status !== 'pending',
      primaryRecipientDeferral: p?.recipientDeferral === true,
    });
    if (decision.reason === 'withheld') out.withheld.push(rcpt);
    if (decision.reason === 'not-needed' || decision.reason === 'withheld') out.undecided = true;
    if (decision.reason === 'not-needed' || decision.reason === 'withheld' || decision.reason === 'primary-delivered') continue;
    st.deliveries.backup ??= { recipients: {}, attempts: 0, nextAttemptAt: 0 };
    out.dirty = true;
    if (decision.copy) {
      st.deliveries.backup.recipients[rcpt] = { status: 'pending', detail: decision.reason, reason: decision.reason };
    } else if (decision.reason === 'excluded') {
      st.deliveries.backup.recipients[rcpt] = { status: 'excluded', rule: decision.rule, at: now };
      out.excluded.set(decision.rule, [...(out.excluded.get(decision.rule) ?? []), rcpt]);
    }
  }
  return out;
}
