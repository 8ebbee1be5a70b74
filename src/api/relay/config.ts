// The relay's config file, half of the operator<->relay contract (the admin
// API is the other, admin.ts): the MailContinuity spec exactly as the user
// wrote it (validated with the same zod schema as the CRD) plus the runtime
// facts the operator knows: where files are mounted, which ports to listen
// on. The operator renders it into a ConfigMap (it holds no secret: Secrets
// are mounted as files and the config names their paths); tests and the demo
// write it by hand.
import { z } from 'zod';
import { MailContinuitySpec } from '../v1alpha1/mailcontinuity.js';

const filePath = z.string().min(1).describe('An absolute path inside the relay container.');

export const RelayConfig = z
  .object({
    /** Identifies the relay in logs, metrics and the audit log (the pod name in Kubernetes). */
    instance: z.string().min(1).default('relay-0'),
    spec: MailContinuitySpec,
    listen: z
      .object({
        host: z.string().default('0.0.0.0').describe('Address the SMTP listener binds to.'),
        /** Overrides spec.relay.port (tests bind port 0). */
        port: z.number().int().min(0).max(65535).optional(),
        /** Host name in the banner, EHLO reply and Received header. */
        hostname: z.string().min(1).default('mail-continuity-relay'),
      })
      .strict()
      .prefault({}),
    http: z
      .object({
        host: z.string().default('0.0.0.0'),
        port: z.number().int().min(0).max(65535).default(8080).describe('/metrics, /healthz, /readyz and /admin.'),
      })
      .strict()
      .prefault({}),
    paths: z
      .object({
        spool: filePath.describe('Spool directory (the PVC mount).'),
        audit: filePath.optional().describe('Audit log (JSON lines); default <spool>/audit.log.'),
        tlsCert: filePath.optional().describe('PEM certificate chain offered with STARTTLS (spec.relay.tlsSecretRef).'),
        tlsKey: filePath.optional().describe('PEM private key for tlsCert.'),
        primaryUsername: filePath.optional().describe('File holding the SMTP AUTH user for the primary.'),
        primaryPassword: filePath.optional().describe('File holding the SMTP AUTH password for the primary.'),
        primaryCa: filePath.optional().describe('PEM CA certificates of spec.primary.caSecretRef, trusted in addition to the system roots.'),
        gmailServiceAccount: filePath.optional().describe('Service account JSON key (spec.backup.gmail.serviceAccountSecretRef).'),
        recipients: filePath.optional().describe('The recipient list of spec.relay.recipients.configMapRef (one address or "@domain" per line): others get 550 5.1.1 at RCPT.'),
        adminToken: filePath.optional().describe('Bearer token that the operator presents to /admin endpoints.'),
      })
      .strict(),
    /**
     * Relay limits that are not part of the MailContinuity API (the operator
     * leaves them at their defaults; tests shorten the timers).
     */
    tuning: z
      .object({
        maxClients: z.number().int().min(1).max(100000).default(500).describe('Concurrent SMTP clients (more get 421).'),
        maxClientsPerAddress: z.number().int().min(1).max(100000).default(100).describe('Concurrent SMTP clients from one address (Postfix smtpd_client_connection_count_limit).'),
        socketTimeoutMs: z.number().int().min(100).default(300_000).describe('Idle SMTP client timeout (Postfix smtpd_timeout 300s).'),
        ipv6GroupPrefix: z.number().int().min(32).max(128).default(64).describe('IPv6 clients count per network of this prefix length for maxClientsPerAddress (one host holds a whole /64). The limit is decided at connect: a burst refuses only its excess (421 4.7.0).'),
        maxSessionMs: z.number().int().min(1000).default(1_800_000).describe('Total time of one SMTP session, however active (421 4.4.2 after it).'),
        stressIdleMs: z.number().int().min(100).default(10_000).describe('Idle time after which a client is cut while the relay is under stress (Postfix ${stress?10}s), and after which the idlest connection of a full client group gives way to a new one.'),
        stressClientsRatio: z.number().min(0.1).max(1).default(0.8).describe('Share of maxClients connected from which the relay is under stress.'),
        receivingBytes: z.number().int().min(0).default(32 * 1024 * 1024).describe('Message bytes being received that may wait in memory for their single write; past it they go to the queue file at once (and the relay is under stress).'),
        maxLineLength: z.number().int().min(1024).max(16_777_216).default(65_536).describe('Longest line (command or data) before the client is disconnected.'),
        maxBacklog: z.number().int().min(1).default(2000).describe('Messages ready for delivery but not yet delivered above which MAIL waits (backlogWaitMs), then gets 451 4.3.2.'),
        backlogWaitMs: z.number().int().min(0).max(300_000).default(30_000).describe('How long MAIL waits for the delivery backlog to drop below maxBacklog before 451 4.3.2 (slows senders down instead of turning them away).'),
        bodyCacheBytes: z.number().int().min(0).default(32 * 1024 * 1024).describe('Message bodies kept in memory for their first delivery attempts (others are read from the spool).'),
        spoolMinFreeBytes: z.number().int().min(0).default(64 * 1024 * 1024).describe('Refuse mail (452 4.3.1) when the spool file system has less free space (Postfix queue_minfree).'),
        fsync: z.boolean().default(true).describe('fsync before 250. Never false in production.'),
        greetingDelay: z.boolean().default(false).describe("smtp-server's 100 ms pause before the greeting, refusing clients that talk first (421): a spambot test that buys nothing when only acceptFrom networks (an MX provider or edge) may connect, and caps senders that open one connection per message. Off by default."),
        primaryConcurrency: z.number().int().min(1).max(1000).default(20).describe('Parallel deliveries (SMTP connections) to the primary (Postfix default_destination_concurrency_limit: 20).'),
        backupConcurrency: z.number().int().min(1).max(1000).default(20).describe("Parallel deliveries to the backup; for GmailApi the least, the window growing with Google's measured latency (transports/gmail/window.ts)."),
        minBackoffMs: z.number().int().min(1).default(30_000).describe('First retry delay after a deferral.'),
        maxBackoffMs: z.number().int().min(1).default(600_000).describe('Longest retry delay.'),
        sweepIntervalMs: z.number().int().min(10).default(5_000).describe('How often deadlines and retention are checked.'),
        deadSweepIntervalMs: z.number().int().min(10).default(60_000).describe('How often the dead/ limits are applied.'),
        secretPollMs: z.number().int().min(10).default(10_000).describe('How often the mounted Secrets (TLS certificate, admin token, Gmail key, Exchange credentials) are checked for a change (a stat per file); a changed one is used from then on, without a restart.'),
        backupCheckIntervalMs: z.number().int().min(100).default(300_000).describe("How often the relay asks Google's token endpoint for an access token (spec.backup.gmail.canaryMailbox) to report BackupReachable (GmailApi only)."),
      })
      .strict()
      .prefault({}),
    /** Only for tests and the demo: point the Google clients at the Gmail emulator (loopback only). */
    google: z
      .object({
        rootUrl: z.string().url().optional().describe('Replaces https://gmail.googleapis.com/.'),
        tokenUrl: z.string().url().optional().describe('Replaces https://oauth2.googleapis.com/token.'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type RelayConfig = z.output<typeof RelayConfig>;
export type RelayConfigInput = z.input<typeof RelayConfig>;
