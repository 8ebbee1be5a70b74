// spec.failover and spec.recovery: when mail goes to Gmail instead of waiting
// for the primary, and the paced replay once the primary is back.
import { z } from 'zod';
import { duration, withRules } from './fields.js';
import { parseDuration } from './formats.js';

/** RFC 3339 with a zone (Z or an offset), as CEL's timestamp() reads it. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const instant = (description: string) =>
  z
    .string()
    .regex(RFC3339, 'must be an RFC 3339 time with a zone, e.g. "2026-12-05T22:00:00+01:00" or "2026-12-05T21:00:00Z"')
    .refine((v) => !Number.isNaN(Date.parse(v)), 'must be a real date and time')
    .meta({ format: 'date-time' })
    .describe(description);

/** Longest maintenance window: a patch weekend, not a permanent failover (that is manual: Active). */
export const MAX_WINDOW_MS = 7 * 24 * 3_600_000;

const maintenanceWindow = withRules(
  z
    .object({
      start: instant('When the window starts (RFC 3339 with a zone offset).'),
      end: instant('When the window ends: failover ends and the relays replay to the primary.'),
      description: z.string().max(256).optional().describe('What the window is for, e.g. "Exchange CU14"; shown in the Events.'),
    })
    .strict(),
  [
    {
      rule: 'timestamp(self.end) > timestamp(self.start)',
      check: (v) => Date.parse(v.end) > Date.parse(v.start),
      message: 'end must be after start',
      fieldPath: '.end',
    },
    {
      rule: "timestamp(self.end) - timestamp(self.start) <= duration('168h')",
      check: (v) => Date.parse(v.end) - Date.parse(v.start) <= MAX_WINDOW_MS,
      message: 'a maintenance window lasts at most 168h (7 days); for longer, set manual: Active',
      fieldPath: '.end',
    },
  ],
).describe(
  'A planned maintenance window of the primary: from start to end the MailContinuity is in failover (mail goes to Gmail and waits in the relay spool, not delivered to the primary), then the relays replay to the primary.',
);

export type MaintenanceWindow = z.output<typeof maintenanceWindow>;

/** failover.messageDeadline when the spec has none (its description says why). */
export const MESSAGE_DEADLINE_DEFAULT = '30m';

export const failover = withRules(
  z
    .object({
      manual: z
        .enum(['Auto', 'Active', 'Inactive'])
        .default('Auto')
        .describe(
          'Auto: fail over when probes say the primary is down. Active: fail over now (e.g. before patching Exchange). Inactive: never fail over automatically.',
        ),
      messageDeadline: duration(
        'In FailoverOnly mode, a recipient the primary has not taken within this time (counted from the relay\'s 250) also gets a copy in Gmail, even when the operator is unreachable: when the primary did not answer (connection refused, timeout, TLS failure, 421) or deferred the whole message (a 4xx to MAIL FROM or to the data). Not when the primary took the session and answered that recipient\'s RCPT TO with a 4xx (452 mailbox full): that is the mailbox\'s problem, not an outage, and the copy is withheld (audited as withheld) unless copyRecipientDeferrals is true. Default 30m: RFC 5321 (4.5.4.1) has a sending server wait at least 30 minutes before it retries, so mail the primary cannot take reaches Gmail no later than the sender\'s own retry would have, and a restart or a short hiccup of the primary (the relay retries it from 30s on) sends nothing to Google. At least 1m; a shorter deadline sends Gmail more of the mail a slow primary would still have taken.',
      ).default(MESSAGE_DEADLINE_DEFAULT),
      copyRecipientDeferrals: z
        .boolean()
        .default(false)
        .describe(
          'FailoverOnly: true also copies to Gmail, once messageDeadline has passed, a recipient that a working primary keeps deferring by itself (a 4xx answer to its RCPT TO, such as 452 mailbox full). False (the default): such a recipient gets a copy only during a failover.',
        ),
      schedule: z
        .array(maintenanceWindow)
        .max(50)
        .optional()
        .describe(
          'Planned maintenance windows (e.g. an Exchange patch night). manual Active and Inactive win over them; windows of the past are ignored.',
        ),
    })
    .strict(),
  [
    {
      rule: "!has(self.messageDeadline) || duration(self.messageDeadline) >= duration('1m')",
      check: (v) => v.messageDeadline === undefined || parseDuration(v.messageDeadline) >= 60_000,
      message: 'messageDeadline must be at least 1m',
      fieldPath: '.messageDeadline',
    },
  ],
).describe('When mail goes to Gmail instead of waiting for the primary.');

export const recovery = z
  .object({
    maxMessagesPerSecond: z
      .number()
      .int()
      .min(1)
      .max(10000)
      .default(20)
      .describe('Rate at which all relay replicas together replay missed mail to the primary after an outage.'),
  })
  .strict()
  .describe('Replay of missed mail once the primary is healthy again.');
