// Pure policy: which recipients the relay accepts, which destinations a
// message needs, and which exclusion rule keeps it out of the backup. No I/O, no clock: callers pass `now`.
import { parseDuration } from '../../api/v1alpha1/formats.js';
import type { MailContinuitySpec } from '../../api/v1alpha1/mailcontinuity.js';
import { matchExclusion, type MessageFacts } from './exclusions.js';

export type { ExcludeRule, MessageFacts } from './exclusions.js';

// ---------------------------------------------------------------- recipients

export type RecipientVerdict = { ok: true; address: string } | { ok: false; reason: string };

/** atext of RFC 5322 minus the routing characters % and ! (and minus /, |, which nobody needs). */
const ATOM = /^[A-Za-z0-9#$&'*+=?^_`{}~\-\u0080-\u{10FFFF}]+$/u;

/**
 * Accepts `local@domain` when the domain, lower-cased, is exactly one of
 * `domains`. Refuses what a hardened Postfix refuses: source routes
 * (`@a:b@c`), `%` and `!` routing, quoted local parts that hide `@`, `%`, `!`,
 * trailing dots, address literals and look-alike domains.
 */
export function checkRecipient(address: string, domains: ReadonlySet<string>): RecipientVerdict {
  if (address.length === 0 || address.length > 320) return { ok: false, reason: 'empty or over-long address' };
  if (address.startsWith('@') || address.includes(':')) return { ok: false, reason: 'source route' };
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f<>,;\\]/.test(address)) return { ok: false, reason: 'forbidden character' };
  if (/\s/.test(address.startsWith('"') ? address.slice(address.lastIndexOf('"')) : address)) return { ok: false, reason: 'white space outside quotes' };
  const at = address.lastIndexOf('@');
  if (at <= 0) return { ok: false, reason: 'no domain' };
  const local = address.slice(0, at);
  const domain = address.slice(at + 1).toLowerCase();
  if (local.length > 128) return { ok: false, reason: 'local part too long' };
  if (local.startsWith('"')) {
    if (!local.endsWith('"') || local.length < 3) return { ok: false, reason: 'malformed quoted local part' };
    const inner = local.slice(1, -1);
    if (/["@%!]/.test(inner)) return { ok: false, reason: 'routing characters in quoted local part' };
  } else {
    if (local.includes('@') || local.includes('%') || local.includes('!')) return { ok: false, reason: 'routing characters in local part' };
    const atoms = local.split('.');
    if (atoms.some((a) => !ATOM.test(a))) return { ok: false, reason: 'malformed local part' };
  }
  if (!domains.has(domain)) return { ok: false, reason: `domain ${JSON.stringify(domain)} is not served here` };
  return { ok: true, address: `${local}@${domain}` };
}

// ---------------------------------------------------------------- destinations

export type PolicySpec = Pick<MailContinuitySpec, 'mode' | 'failover' | 'policy'>;

export interface BackupContext {
  /** The relay's failover state (set by the operator, or spec.failover.manual Active). */
  failoverActive: boolean;
  now: number;
  /** True once the primary has the message for this recipient (FailoverOnly then needs no copy). */
  primaryDelivered: boolean;
  /** The primary's last answer for this recipient was a 4xx to its RCPT TO (452 mailbox full) in a session that worked. */
  primaryRecipientDeferral?: boolean;
}

/** The audit's reason for a copy withheld from a recipient the working primary defers alone. */
export const WITHHELD_RECIPIENT_DEFERRAL =
  'message-deadline passed but the primary answers and defers only this recipient (4xx to RCPT TO): a mailbox problem, not an outage; copyRecipientDeferrals is false';

export type BackupDecision =
  | { copy: true; reason: 'dual-delivery' | 'failover-active' | 'message-deadline' }
  | { copy: false; reason: 'excluded'; rule: string }
  | { copy: false; reason: 'not-needed' | 'primary-delivered' }
  /** FailoverOnly: the deadline passed for a recipient the working primary defers alone (may change: a failover, the primary taking it). */
  | { copy: false; reason: 'withheld'; detail: string };

/** Milliseconds of spec.failover.messageDeadline, or Infinity when unset. */
export function messageDeadlineMs(spec: PolicySpec): number {
  const d = spec.failover.messageDeadline;
  return d === undefined ? Infinity : parseDuration(d);
}

/**
 * Whether `recipient` of a message needs a copy at the backup now. The primary
 * is always required. In DualDelivery a copy is always due; in FailoverOnly
 * while failover is active (or spec.failover.manual is Active), or once the
 * message has waited messageDeadline without reaching the primary, unless the
 * primary's last answer was a 4xx to that recipient's RCPT TO in a session that
 * worked (452 mailbox full: withheld, unless spec.failover.copyRecipientDeferrals).
 * `primaryDelivered` means the primary is done with the recipient (delivered,
 * or refused it for good). Exclusions then win in every mode. "copy" and
 * "excluded" are final (the caller persists them); "not-needed" and "withheld" may change later.
 */
export function decideBackup(spec: PolicySpec, facts: MessageFacts, recipient: string, ctx: BackupContext): BackupDecision {
  let due: 'dual-delivery' | 'failover-active' | 'message-deadline';
  if (spec.mode === 'DualDelivery') due = 'dual-delivery';
  else if (ctx.primaryDelivered) return { copy: false, reason: 'primary-delivered' };
  else if (ctx.failoverActive || spec.failover.manual === 'Active') due = 'failover-active';
  else if (ctx.now - facts.receivedAt < messageDeadlineMs(spec)) return { copy: false, reason: 'not-needed' };
  else if (ctx.primaryRecipientDeferral && !spec.failover.copyRecipientDeferrals) return { copy: false, reason: 'withheld', detail: WITHHELD_RECIPIENT_DEFERRAL };
  else due = 'message-deadline';
  // Exclusions win in every mode; they are reported only when a copy was due, so the audit log
  // names every message a rule actually kept away from the backup.
  const excluded = matchExclusion(spec.policy.exclude, facts, recipient);
  if (excluded) return { copy: false, reason: 'excluded', rule: excluded.rule };
  return { copy: true, reason: due };
}
