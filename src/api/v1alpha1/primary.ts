// spec.primary: the Exchange server, how the relay reaches it and how the
// operator probes its health.
import { z } from 'zod';
import { dnsName, port, secretKeyRef, secretName, withRules } from './fields.js';

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
      .describe(
          'Do not verify the health endpoint certificate. Only for test setups: trust a private CA with primary.caBundle or caSecretRef instead.',
        ),
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

export const primary = withRules(
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
        .describe(
          'Do not verify the primary server certificate. Only for test setups: it allows a man in the middle. For a certificate from a private CA, set caBundle or caSecretRef.',
        ),
      caBundle: z
        .string()
        .min(1)
        .max(65536)
        .regex(/-----BEGIN CERTIFICATE-----/, 'must hold PEM certificates ("-----BEGIN CERTIFICATE-----")')
        .optional()
        .describe(
          "PEM CA certificates (e.g. your internal CA) that the relay's SMTP client and the operator's SMTP and HTTPS probes trust in addition to the system roots, for an Exchange certificate from a private CA.",
        ),
      caSecretRef: secretKeyRef(
        'Secret key holding PEM CA certificates trusted in addition to the system roots, as caBundle (which it replaces): e.g. the ca.crt of a cert-manager CA issuer Secret.',
        'ca.crt',
      ).optional(),
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
    {
      rule: '!has(self.caBundle) || !has(self.caSecretRef)',
      check: (v) => v.caBundle === undefined || v.caSecretRef === undefined,
      message: 'set caBundle or caSecretRef, not both',
      fieldPath: '.caSecretRef',
    },
    {
      rule: "self.tls != 'None' || !has(self.caBundle) && !has(self.caSecretRef)",
      check: (v) => v.tls !== 'None' || (v.caBundle === undefined && v.caSecretRef === undefined),
      message: 'caBundle and caSecretRef need tls STARTTLS or Implicit: with tls None no certificate is checked',
      fieldPath: '.tls',
    },
  ],
).describe('The primary mail server (Microsoft Exchange) that normally receives all mail.');
