// The MailContinuity API (group mailcontinuity.io, version v1alpha1) as zod
// schemas: the single source of truth for the TypeScript types, the runtime
// validation of the relay config and the CRD's OpenAPI schema (see crd.ts).
//
// Rules a JSON schema cannot state are CEL rules in `x-kubernetes-validations`,
// so `kubectl apply` of a bad resource fails at once with a message that names
// the field and the fix. Every rule here is also checked by `validateSpec` in
// validate.ts, so the relay and the unit tests see the same rules without an
// apiserver.
import { z } from 'zod';
import type { ObjectMeta } from '../meta.js';
import { isCidr, parseCidr, parseDuration } from './formats.js';

export const GROUP = 'mailcontinuity.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'MailContinuity';
export const PLURAL = 'mailcontinuities';
export const SINGULAR = 'mailcontinuity';
export const SHORT_NAMES = ['mc'];
export const CATEGORIES = ['mail', 'all'];

/**
 * A validation rule stated twice, side by side: as CEL for the apiserver and as
 * a TypeScript check for the relay and the unit tests.
 */
interface Rule<T> {
  rule: string;
  message: string;
  fieldPath?: string;
  reason?: 'FieldValueRequired' | 'FieldValueInvalid' | 'FieldValueForbidden';
  check: (value: T) => boolean;
}

function withRules<S extends z.ZodType>(schema: S, rules: Rule<z.output<S>>[]): S {
  return schema
    .superRefine((value, ctx) => {
      for (const r of rules) {
        if (r.check(value as z.output<S>)) continue;
        const path = r.fieldPath ? r.fieldPath.slice(1).split('.') : [];
        ctx.addIssue({ code: 'custom', message: r.message, path });
      }
    })
    .meta({ 'x-kubernetes-validations': rules.map(({ check: _check, ...celRule }) => celRule) }) as S;
}

/** A Go-style duration as Kubernetes uses it: "90s", "15m", "120h", "1h30m". */
const durationPattern = /^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$/;
const duration = (description: string) =>
  z.string().regex(durationPattern, 'must be a duration such as "90s", "15m" or "120h"').describe(description);

/** An RFC 1123 DNS name in lower case, e.g. "corp.example.com". */
const dnsName = z
  .string()
  .min(1)
  .max(253)
  .regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
    'must be a lower-case DNS name such as "corp.example.com"',
  );

const secretName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a Secret name (RFC 1123 subdomain)')
  .describe('Name of a Secret in the namespace of the MailContinuity.');

/** A reference to one key of a Secret in the namespace of the MailContinuity. */
const secretKeyRef = (description: string, defaultKey: string) =>
  z
    .object({
      name: secretName,
      key: z
        .string()
        .min(1)
        .max(253)
        .default(defaultKey)
        .describe(`Key in the Secret's data that holds the value (default "${defaultKey}").`),
    })
    .strict()
    .describe(description);

const port = (description: string, def: number) =>
  z.number().int().min(1).max(65535).default(def).describe(description);

/** A Kubernetes resource quantity: a string such as "500m" or "1Gi", or a number. */
const quantity = z
  .union([z.string(), z.number()])
  .meta({ 'x-kubernetes-int-or-string': true })
  .describe('A Kubernetes resource quantity, e.g. "250m", "256Mi" or 1.');

const resourceRequirements = z
  .object({
    requests: z
      .record(z.string(), quantity)
      .optional()
      .describe('Minimum resources per relay pod, e.g. {cpu: 100m, memory: 128Mi}.'),
    limits: z
      .record(z.string(), quantity)
      .optional()
      .describe('Maximum resources per relay pod, e.g. {memory: 256Mi}.'),
  })
  .strict()
  .describe('Compute resources of each relay container.');

export const TlsMode = z.enum(['STARTTLS', 'Implicit', 'None']);

const smtpHealth = z
  .object({
    enabled: z
      .boolean()
      .default(true)
      .describe('Probe the SMTP port: connect, banner, EHLO, STARTTLS handshake when tls is STARTTLS, QUIT.'),
  })
  .strict()
  .describe('SMTP probe of the primary server.');

const httpsHealth = z
  .object({
    url: z
      .string()
      .min(1)
      .max(2048)
      .regex(/^https?:\/\/[^\s/]+(\/\S*)?$/, 'must be an http(s) URL')
      .describe(
        'URL that answers 200 while the server is healthy, e.g. https://mail.corp.example.com/owa/healthcheck.htm.',
      ),
    expectedStatus: z.number().int().min(100).max(599).default(200).describe('HTTP status a healthy server answers.'),
    insecureSkipTLSVerify: z
      .boolean()
      .default(false)
      .describe('Do not verify the health endpoint certificate. Only for test setups.'),
  })
  .strict()
  .describe("Optional HTTPS health check, e.g. Exchange's /owa/healthcheck.htm.");

const health = withRules(
  z
    .object({
      smtp: smtpHealth.prefault({}),
      https: httpsHealth.optional(),
      periodSeconds: z.number().int().min(1).max(3600).default(10).describe('Seconds between two probes.'),
      timeoutSeconds: z
        .number()
        .int()
        .min(1)
        .max(600)
        .default(5)
        .describe('Seconds after which one probe counts as failed.'),
      failureThreshold: z
        .number()
        .int()
        .min(1)
        .max(100)
        .default(3)
        .describe('Consecutive failed probes before the primary counts as unhealthy (and automatic failover starts).'),
      successThreshold: z
        .number()
        .int()
        .min(1)
        .max(100)
        .default(2)
        .describe('Consecutive good probes before an unhealthy primary counts as healthy again (and replay starts).'),
    })
    .strict(),
  [
    {
      rule: 'self.timeoutSeconds <= self.periodSeconds',
      check: (v) => v.timeoutSeconds <= v.periodSeconds,
      message: 'timeoutSeconds must not exceed periodSeconds',
      fieldPath: '.timeoutSeconds',
    },
  ],
).describe('How the operator probes the primary server, with hysteresis so that one slow probe does not flap.');

const primary = withRules(
  z
    .object({
      host: dnsName.describe(
        'Host name of the Exchange server (or its load balancer) that receives mail from the relay.',
      ),
      port: port('SMTP port of the primary server.', 25),
      tls: TlsMode.default('STARTTLS').describe(
        'Transport security towards the primary: STARTTLS (upgrade on the SMTP port), Implicit (TLS from the first byte, usually port 465) or None.',
      ),
      insecureSkipTLSVerify: z
        .boolean()
        .default(false)
        .describe('Do not verify the primary server certificate. Only for test setups: it allows a man in the middle.'),
      credentialsSecretRef: z
        .object({
          name: secretName,
        })
        .strict()
        .optional()
        .describe(
          'Secret with keys "username" and "password" for SMTP AUTH at the primary. Omit when Exchange accepts the relay by IP.',
        ),
      health: health.prefault({}),
    })
    .strict(),
  [
    {
      rule: "!has(self.credentialsSecretRef) || self.tls != 'None'",
      check: (v) => !v.credentialsSecretRef || v.tls !== 'None',
      message: 'credentialsSecretRef needs tls STARTTLS or Implicit: passwords are never sent in clear text',
      fieldPath: '.tls',
    },
  ],
).describe('The primary mail server (Microsoft Exchange) that normally receives all mail.');

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

const backup = z.object({ gmail }).strict().describe('Where mail goes besides (or instead of) the primary.');

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
          'Envelope sender (MAIL FROM) glob, e.g. "*@hr.corp.example.com", matched against the canonical address: the domain lower-cased without a trailing dot, a quoted local part unquoted when it needs no quotes.',
        ),
      recipient: glob
        .optional()
        .describe(
          'Envelope recipient (RCPT TO) glob, e.g. "ceo@corp.example.com", matched against the canonical address ("ceo"@Corp.Example.com is ceo@corp.example.com). It keeps that recipient\'s copy out of Gmail; the copies of the message\'s other recipients still carry the whole message (its To and Cc, its body).',
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

const policy = z
  .object({
    exclude: z
      .array(excludeRule)
      .max(256)
      .default([])
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] })
      .describe('Rules that keep matching mail out of Gmail entirely, in every mode.'),
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

const cidr = z.string().min(3).max(43).describe('An IPv4 or IPv6 CIDR such as "203.0.113.0/24".');

const service = z
  .object({
    type: z.enum(['ClusterIP', 'LoadBalancer', 'NodePort']).default('ClusterIP').describe('Type of the relay Service.'),
    port: port('Port of the relay Service.', 25),
    externalTrafficPolicy: z
      .enum(['Local', 'Cluster'])
      .default('Local')
      .describe(
        'For LoadBalancer and NodePort: Local keeps the client address, so acceptFrom sees the real sender. Cluster hides it behind a node address and can turn acceptFrom into an open relay.',
      ),
    loadBalancerSourceRanges: withRules(z.array(cidr).max(256).default([]), [
      {
        rule: 'self.all(c, isCIDR(c))',
        check: (v) => v.every(isCidr),
        message: 'every loadBalancerSourceRanges entry must be a CIDR such as "203.0.113.0/24"',
      },
    ]).describe('CIDRs allowed through the cloud load balancer.'),
  })
  .strict()
  .describe('How the relay is exposed.');

const persistence = z
  .object({
    enabled: z
      .boolean()
      .default(true)
      .describe(
        'Give every relay replica its own PersistentVolumeClaim for the spool. Disabled means emptyDir: mail accepted but not yet delivered is lost with the pod.',
      ),
    size: quantity.default('10Gi').describe('Size of each spool volume.'),
    storageClassName: z
      .string()
      .min(1)
      .max(253)
      .optional()
      .describe('StorageClass of the spool volumes; the cluster default when omitted.'),
  })
  .strict()
  .describe('Durable spool storage.');

const relay = withRules(
  z
    .object({
      replicas: z.number().int().min(1).max(50).default(2).describe('Number of relay pods.'),
      image: z.string().min(1).max(512).optional().describe("Relay image; the operator's own image when omitted."),
      resources: resourceRequirements.optional(),
      service: service.prefault({}),
      port: z
        .number()
        .int()
        .min(1024)
        .max(65535)
        .default(2525)
        .describe('Port the relay listens on inside the pod (non-root, so >= 1024).'),
      tlsSecretRef: z
        .object({ name: secretName })
        .strict()
        .optional()
        .describe(
          'A kubernetes.io/tls Secret (e.g. from cert-manager) whose certificate the relay offers with STARTTLS.',
        ),
      requireTLS: z
        .boolean()
        .default(false)
        .describe('Refuse MAIL FROM before STARTTLS (530 5.7.0). Needs tlsSecretRef.'),
      acceptFrom: withRules(z.array(cidr).min(1).max(1024), [
        {
          rule: 'self.all(c, isCIDR(c))',
          check: (v) => v.every(isCidr),
          message: 'every acceptFrom entry must be a CIDR such as "203.0.113.0/24" or "2001:db8::/32"',
        },
      ]).describe("Client networks allowed to send mail through the relay, e.g. your MX provider's ranges."),
      allowAnySource: z
        .boolean()
        .default(false)
        .describe('Allow acceptFrom to contain 0.0.0.0/0 or ::/0. The relay still takes only mail for spec.domains.'),
      persistence: persistence.prefault({}),
      spool: z
        .object({
          retention: duration(
            'How long undeliverable mail stays in the spool before it moves to the dead-letter folder (Postfix: 5 days).',
          ).default('120h'),
        })
        .strict()
        .prefault({})
        .describe('Spool settings.'),
    })
    .strict(),
  [
    {
      rule: 'self.allowAnySource || !self.acceptFrom.exists(c, isCIDR(c) && cidr(c).prefixLength() == 0)',
      check: (v) => v.allowAnySource || !v.acceptFrom.some((c) => parseCidr(c)?.prefixLength === 0),
      message:
        "acceptFrom contains 0.0.0.0/0 or ::/0: list your senders' networks, or set allowAnySource: true to accept any client (mail is still limited to spec.domains)",
      fieldPath: '.acceptFrom',
    },
    {
      rule: '!self.requireTLS || has(self.tlsSecretRef)',
      check: (v) => !v.requireTLS || v.tlsSecretRef !== undefined,
      message: 'requireTLS needs tlsSecretRef: the relay has no certificate to offer',
      fieldPath: '.tlsSecretRef',
      reason: 'FieldValueRequired',
    },
  ],
).describe('The SMTP relay the operator runs in front of the primary.');

const failover = withRules(
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

const recovery = z
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
          'DualDelivery: every message goes to the primary and to Gmail (as Google Message Continuity did). FailoverOnly: Gmail gets a copy only during a failover or when the primary missed messageDeadline.',
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
      rule: "self.mode != 'FailoverOnly' || has(self.failover) && has(self.failover.messageDeadline)",
      check: (v) => v.mode !== 'FailoverOnly' || v.failover.messageDeadline !== undefined,
      message:
        'mode FailoverOnly needs failover.messageDeadline (e.g. "15m"): the relay\'s own fallback when the operator cannot tell it that the primary is down',
      fieldPath: '.failover.messageDeadline',
      reason: 'FieldValueRequired',
    },
  ],
).describe('The desired state of mail continuity for a set of domains.');

const condition = z
  .object({
    type: z.string().min(1).max(316).describe('Type of the condition, e.g. Ready or FailoverActive.'),
    status: z.enum(['True', 'False', 'Unknown']).describe('Status of the condition.'),
    observedGeneration: z.number().int().min(0).optional().describe('The generation the condition speaks of.'),
    lastTransitionTime: z.string().describe('When the status last changed (RFC 3339).').meta({ format: 'date-time' }),
    reason: z.string().min(1).max(1024).describe('A CamelCase reason, e.g. SecretNotFound.'),
    message: z.string().max(32768).describe('A human-readable message.'),
  })
  .strict();

export const MailContinuityStatus = z
  .object({
    observedGeneration: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('The generation of the spec this status speaks of.'),
    conditions: z
      .array(condition)
      .optional()
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] })
      .describe('Ready, Reconciling, Stalled (kstatus) and PrimaryHealthy, BackupReachable, FailoverActive.'),
    primary: z
      .object({
        lastProbeTime: z.string().optional().describe('Time of the last probe (RFC 3339).'),
        latencyMilliseconds: z.number().int().min(0).optional().describe('Duration of the last probe.'),
        consecutiveFailures: z.number().int().min(0).optional().describe('Failed probes in a row.'),
        consecutiveSuccesses: z.number().int().min(0).optional().describe('Good probes in a row.'),
      })
      .strict()
      .optional()
      .describe("Health of the primary as the operator's probes see it."),
    relay: z
      .object({
        replicas: z.number().int().min(0).optional().describe('Relay pods that exist.'),
        readyReplicas: z.number().int().min(0).optional().describe('Relay pods that are ready.'),
        queuedPrimary: z.number().int().min(0).optional().describe('Messages waiting for the primary.'),
        queuedBackup: z.number().int().min(0).optional().describe('Messages waiting for Gmail.'),
      })
      .strict()
      .optional()
      .describe('State of the relay.'),
    lastFailover: z
      .object({
        start: z.string().optional().describe('When the failover started (RFC 3339).'),
        end: z.string().optional().describe('When it ended; empty while it is active.'),
        trigger: z.enum(['Automatic', 'Manual']).optional().describe('What started it.'),
        messagesToBackup: z.number().int().min(0).optional().describe('Messages sent to Gmail during the failover.'),
        messagesReplayed: z.number().int().min(0).optional().describe('Messages replayed to the primary after it.'),
        replayRemaining: z.number().int().min(0).optional().describe('Messages still to replay.'),
      })
      .strict()
      .optional()
      .describe('The last continuity event.'),
  })
  .strict()
  .describe('The observed state of mail continuity.');

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
