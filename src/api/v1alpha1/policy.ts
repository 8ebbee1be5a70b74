// spec.policy: what never reaches Gmail (exclude rules) and the relay's
// message limits.
import { z } from 'zod';
import { duration, withRules } from './fields.js';

const glob = z
  .string()
  .min(1)
  .max(320)
  .describe('A case-insensitive glob: "*" matches any run of characters, "?" one character, anything else itself. Matched in time linear in the value.');

const excludeRule = withRules(
  z
    .object({
      name: z
        .string()
        .min(1)
        .max(63)
        .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a lower-case name such as "confidential"')
        .describe('Name of the rule, written to the audit log for every message it keeps out of Gmail.'),
      sender: glob
        .optional()
        .describe(
          'Sender glob, e.g. "*@hr.corp.example.com", matched against the envelope sender (MAIL FROM) and, failing closed, every address in the From: and Sender: header fields (any occurrence, encoded words decoded, comments dropped; a display name shaped like an address counts too): the rule matches when any of them matches. Not Reply-To. Addresses compare canonical: the domain lower-cased without a trailing dot, a quoted local part unquoted when it needs no quotes.',
        ),
      recipient: glob
        .optional()
        .describe(
          'Envelope recipient (RCPT TO) glob, e.g. "ceo@corp.example.com", matched against the canonical address ("ceo"@Corp.Example.com is ceo@corp.example.com): the mailbox whose copy is decided, not the To: or Cc: header. It keeps that recipient\'s copy out of Gmail; the copies of the message\'s other recipients still carry the whole message (its To and Cc, its body). To keep out every copy of mail that names someone, use a header rule on To or Cc (e.g. {name: To, value: "*ceo@corp.example.com*"}).',
        ),
      header: z
        .object({
          name: z
            .string()
            .min(1)
            .max(128)
            .regex(/^[!-9;-~]+$/, 'must be a header field name such as "Sensitivity"')
            .describe('Header field name, matched case-insensitively; every occurrence of a repeated field counts.'),
          value: glob.describe(
            'Glob the header value must match, e.g. "Company-Confidential". The value is read as a mail client reads it: unfolded, RFC 2047 encoded words decoded, control characters dropped, white space runs as one space and trimmed; and again with comments removed and quoted strings unquoted. The rule matches when any reading of any occurrence matches. A value over 65536 characters is not evaluated: the rule applies.',
          ),
        })
        .strict()
        .optional()
        .describe('A header match, e.g. {name: Sensitivity, value: Company-Confidential}.'),
    })
    .strict(),
  [
    {
      rule: 'has(self.sender) || has(self.recipient) || has(self.header)',
      check: (v) => v.sender !== undefined || v.recipient !== undefined || v.header !== undefined,
      message: 'an exclude rule needs at least one of sender, recipient or header',
    },
  ],
).describe(
  'Mail matching every given matcher of a rule never reaches Gmail. The whole header section is evaluated; a message whose header section does not end within 1 MiB is kept out of Gmail whatever the rules (audited as unevaluated).',
);

const audit = z
  .object({
    maxFileBytes: z
      .number()
      .int()
      .min(65536)
      .max(1073741824)
      .default(67108864)
      .describe('The audit log (<spool>/audit.log) is rotated once it holds this many bytes: renamed audit.log.NNNNNNNN (the segment number), a new file starts.'),
    retainFiles: z.number().int().min(1).max(100000).default(30).describe('Rotated audit files kept on the spool volume (the newest); older ones are removed. Export them first (mail-continuity audit export) if the law asks for longer.'),
    retainFor: duration('Rotated audit files last written longer ago are removed, e.g. "8760h" (a year). Unset: kept by retainFiles only.').optional(),
  })
  .strict()
  .describe(
    'The audit log: one JSON line per copy to Gmail (copy-intent, on stable storage before the copy starts, and copied-to-backup) and per message kept out of it (excluded, withheld), with the rule or reason. Each line carries the SHA-256 of the line before and every file starts with a genesis record linked to the previous file, so a changed, removed or inserted line or file is found by mail-continuity audit verify.',
  );

export const policy = z
  .object({
    exclude: z
      .array(excludeRule)
      .max(256)
      .default([])
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] })
      .describe('Rules that keep matching mail out of Gmail entirely, in every mode.'),
    audit: audit.prefault({}),
    maxMessageBytes: z
      .number()
      .int()
      .min(1024)
      .max(157286400)
      .default(36700160)
      .describe('Largest message the relay accepts, in bytes (SIZE). Gmail imports at most 150 MiB.'),
    maxRecipients: z
      .number()
      .int()
      .min(1)
      .max(10000)
      .default(500)
      .describe('Most recipients one message may have; more get 452 4.5.3.'),
  })
  .strict()
  .describe('What reaches Gmail, and the limits of the relay.');
