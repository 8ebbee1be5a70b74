// spec.backup: Google Workspace, by the Gmail API or its SMTP relay, and the
// rewrite of Exchange addresses to Workspace mailboxes.
import { z } from 'zod';
import { dnsName, port, secretKeyRef, withRules } from './fields.js';

const addressRule = z
  .string()
  .min(2)
  .max(320)
  .regex(/^([^@\s]+)?@[a-z0-9.-]+$/, 'must be an address ("alice@corp.example.com") or a domain ("@corp.example.com")');

const addressMapEntry = withRules(
  z
    .object({
      from: addressRule.describe(
        'Exchange address ("alice@corp.example.com") or domain ("@corp.example.com") to rewrite.',
      ),
      to: addressRule.describe('Workspace address or domain it becomes ("@corp.example.org" keeps the local part).'),
    })
    .strict(),
  [
    {
      rule: "self.from.startsWith('@') == self.to.startsWith('@')",
      check: (v) => v.from.startsWith('@') === v.to.startsWith('@'),
      message: 'from and to must both be domains ("@...") or both be full addresses',
    },
  ],
).describe(
  'One rewrite rule from an Exchange address to a Google Workspace mailbox. The first matching rule wins; an address without a match is used as it is.',
);

const smtpRelay = z
  .object({
    host: dnsName.default('smtp-relay.gmail.com').describe("Host of Google Workspace's SMTP relay service."),
    port: port('Port of the SMTP relay service (STARTTLS).', 587),
  })
  .strict()
  .describe('Google Workspace SMTP relay service, used when method is SmtpRelay.');

const gmail = withRules(
  z
    .object({
      method: z
        .enum(['GmailApi', 'SmtpRelay'])
        .default('GmailApi')
        .describe(
          'GmailApi imports each message into the mailbox with users.messages.import (domain-wide delegation); SmtpRelay sends it through smtp-relay.gmail.com.',
        ),
      serviceAccountSecretRef: secretKeyRef(
        'Secret holding the JSON key of a service account with domain-wide delegation for the scope https://www.googleapis.com/auth/gmail.insert. Required for method GmailApi.',
        'credentials.json',
      ).optional(),
      smtpRelay: smtpRelay.optional(),
      canaryMailbox: z
        .string()
        .min(3)
        .max(320)
        .regex(/^[^@\s]+@[a-z0-9.-]+$/, 'must be a mailbox address in lower case, e.g. "mc-canary@corp.example.org"')
        .optional()
        .describe(
          'A Google Workspace mailbox the relays ask an access token for (scope gmail.insert, domain-wide delegation) every few minutes, so BackupReachable says whether the Gmail side works before an outage needs it. Without it the token is asked for the service account itself: the key and the token endpoint are checked, not the delegation. No mail is sent to it.',
        ),
      addressMap: z
        .array(addressMapEntry)
        .max(1000)
        .default([])
        .describe('Rewrite rules from Exchange addresses to Workspace mailboxes.'),
      labelIds: z
        .array(z.string().min(1).max(225))
        .max(100)
        .default(['INBOX', 'UNREAD'])
        .describe('Gmail label IDs given to every imported message.'),
      neverMarkSpam: z
        .boolean()
        .default(false)
        .describe(
          "Tell Gmail never to classify an imported message as spam. Off unless set: Gmail's spam filter stays a safety net for what the relay passes on.",
        ),
      processForCalendar: z
        .boolean()
        .default(false)
        .describe('Let Gmail process calendar invitations in imported messages.'),
    })
    .strict(),
  [
    {
      rule: "self.method != 'GmailApi' || has(self.serviceAccountSecretRef)",
      check: (v) => v.method !== 'GmailApi' || v.serviceAccountSecretRef !== undefined,
      message: 'method GmailApi needs serviceAccountSecretRef: the Secret with the service account key',
      fieldPath: '.serviceAccountSecretRef',
      reason: 'FieldValueRequired',
    },
  ],
).describe('Google Workspace (Gmail) as the backup destination.');

export const backup = z.object({ gmail }).strict().describe('Where mail goes besides (or instead of) the primary.');
