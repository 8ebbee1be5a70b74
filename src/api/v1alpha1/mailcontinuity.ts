// The MailContinuity API (group mailcontinuity.io, version v1alpha1) as zod
// schemas: the single source of truth for the TypeScript types, the runtime
// validation of the relay config and the CRD's OpenAPI schema (see crd.ts).
//
// Rules a JSON schema cannot state are CEL rules in `x-kubernetes-validations`,
// so `kubectl apply` of a bad resource fails at once with a message that names
// the field and the fix. Every rule is stated beside its CEL as a TypeScript
// check (withRules in fields.ts) that the zod schema runs, so the relay and the
// unit tests see the same rules without an apiserver.
//
// One file per section of the spec: primary.ts, backup.ts, policy.ts,
// relay.ts, failover.ts (failover and recovery), status.ts; fields.ts holds the
// pieces they share. This file puts the spec together and names the API.
import { z } from 'zod';
import type { ObjectMeta } from '../meta.js';
import { backup } from './backup.js';
import { dnsName, withRules, type Rule } from './fields.js';
import { failover, recovery } from './failover.js';
import { parseDuration } from './formats.js';
import { policy } from './policy.js';
import { primary } from './primary.js';
import { relay } from './relay.js';
import { type condition, MailContinuityStatus } from './status.js';

export { TlsMode } from './primary.js';
export { MailContinuityStatus };

export const GROUP = 'mailcontinuity.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'MailContinuity';
export const PLURAL = 'mailcontinuities';
export const SINGULAR = 'mailcontinuity';
export const SHORT_NAMES = ['mc'];
export const CATEGORIES = ['mail', 'all'];

export const MailContinuitySpec = withRules(
  z
    .object({
      domains: z
        .array(dnsName.describe('An accepted recipient domain.'))
        .min(1)
        .max(1000)
        .meta({ 'x-kubernetes-list-type': 'set' })
        .describe(
          'Recipient domains the relay accepts mail for. Any other recipient gets 550 5.7.1: never an open relay.',
        ),
      mode: z
        .enum(['DualDelivery', 'FailoverOnly'])
        .default('FailoverOnly')
        .describe(
          'DualDelivery: every message goes to the primary and to Gmail (as Google Message Continuity did). FailoverOnly: Gmail gets a copy of a recipient\'s message only while a failover is active (automatic, manual: Active, or a maintenance window; also mail spooled before it started and still waiting), or once the primary has not taken it within messageDeadline because it did not answer or deferred the whole message; never once the primary has it, never when an exclude rule matches, and a recipient the working primary defers alone (452 mailbox full) only with copyRecipientDeferrals.',
        ),
      primary,
      backup,
      policy: policy.prefault({}),
      relay,
      failover: failover.prefault({}),
      recovery: recovery.prefault({}),
    })
    .strict(),
  [
    {
      rule:
        '!has(self.failover) || !has(self.failover.messageDeadline) || !has(self.relay.spool) || !has(self.relay.spool.retention) || ' +
        'duration(self.relay.spool.retention) > duration(self.failover.messageDeadline)',
      check: (v) =>
        v.failover.messageDeadline === undefined ||
        !(parseDuration(v.relay.spool.retention) <= parseDuration(v.failover.messageDeadline)),
      message:
        'relay.spool.retention must be longer than failover.messageDeadline: mail the primary has not taken would leave the spool before the deadline sends it to Gmail',
      fieldPath: '.relay.spool.retention',
    },
  ],
).describe('The desired state of mail continuity for a set of domains.');

/**
 * The longest name a MailContinuity may have: its relay StatefulSet is
 * <name>-relay, and the StatefulSet controller labels each Pod with
 * controller-revision-hash=<statefulset>-<hash of up to 10 characters>, a label
 * value of at most 63 characters; so <name>-relay holds at most 52 (the
 * Kubernetes limit for StatefulSet names) and the name 46. Its Services
 * (<name>-relay, <name>-relay-pods) are DNS labels: a letter first, no dots.
 */
export const MAX_NAME_LENGTH = 46;

/** Rules on the whole object (x-kubernetes-validations at the CRD's root): the name its children's names allow. */
export const OBJECT_RULES: Rule<{ metadata: { name: string } }>[] = [
  {
    rule: `size(self.metadata.name) <= ${MAX_NAME_LENGTH}`,
    check: (o) => o.metadata.name.length <= MAX_NAME_LENGTH,
    message: `a MailContinuity name has at most ${MAX_NAME_LENGTH} characters: its relay StatefulSet <name>-relay and the revision label of its Pods must stay within Kubernetes' 63-character limit`,
    fieldPath: '.metadata.name',
  },
  {
    rule: "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
    check: (o) => /^[a-z]([-a-z0-9]*[a-z0-9])?$/.test(o.metadata.name),
    message:
      "a MailContinuity name starts with a letter and has only lower-case letters, digits and '-' (no dots): its relay Services <name>-relay and <name>-relay-pods must be DNS labels",
    fieldPath: '.metadata.name',
  },
];

/** What is wrong with a MailContinuity name (the messages of OBJECT_RULES it breaks). */
export const nameProblems = (name: string): string[] =>
  OBJECT_RULES.filter((r) => !r.check({ metadata: { name } })).map((r) => r.message);

export type MailContinuitySpecInput = z.input<typeof MailContinuitySpec>;
export type MailContinuitySpec = z.output<typeof MailContinuitySpec>;
export type MailContinuityStatus = z.output<typeof MailContinuityStatus>;
export type Condition = z.output<typeof condition>;

export type { ObjectMeta };

export interface MailContinuity {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta;
  spec: MailContinuitySpec;
  status?: MailContinuityStatus;
}
