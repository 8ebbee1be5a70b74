// spec.failover and spec.recovery: when mail goes to Gmail instead of waiting
// for the primary, and the paced replay once the primary is back.
import { z } from 'zod';
import { duration, withRules } from './fields.js';
import { parseDuration } from './formats.js';

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
        'In FailoverOnly mode, a message the primary has not taken within this time also goes to Gmail, even when the operator is unreachable.',
      ).optional(),
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
