// Wires the relay: spool -> scheduler -> transports, inbound SMTP in front,
// HTTP (metrics, health, admin) beside. `startRelay` resumes from the spool.
import { readFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { AuditLog } from './audit/log.js';
import type { RelayConfig } from '../api/relay/config.js';
import { parseDuration } from '../api/v1alpha1/formats.js';
import { startBackupCheck } from './control/backup-check.js';
import { Drain } from './control/drain.js';
import { SecretFiles } from './control/secret-files.js';
import { FailoverState } from './control/failover-state.js';
import { httpPort, startHttp } from './control/http.js';
import { quotaShareOf } from './control/quota-share.js';
import { startInbound, type Inbound } from './inbound/server.js';
import { createMetrics, type RelayMetrics } from './metrics.js';
import { parseRecipientList } from './policy/recipients.js';
import { Scheduler } from './scheduler/scheduler.js';
import { DeadLetters, deadLimits } from './spool/dead.js';
import { Spool } from './spool/spool.js';
import { createPrimaryTransport, createSmtpRelayBackupTransport, readPrimaryAuth } from './transports/smtp/transport.js';
import type { Destination, Transport } from './types.js';

export interface RelayDeps {
  log?: Logger;
  /** Replace a transport (tests); by default built from the config. */
  transports?: Partial<Record<Destination, Transport>>;
  /** Register Node's default process metrics (the relay process does; tests with several relays do not). */
  defaultMetrics?: boolean;
}

export interface Relay {
  readonly smtpPort: number;
  readonly httpPort: number;
  readonly config: RelayConfig;
  readonly spool: Spool;
  readonly scheduler: Scheduler;
  readonly failover: FailoverState;
  readonly metrics: RelayMetrics;
  readonly log: Logger;
  /** Draining before a scale-down (set through PUT /admin/failover). */
  readonly drain: Drain;
  /** Stop accepting, finish messages being written, stop deliveries (state stays in the spool), close. */
  stop(): Promise<void>;
}

async function createBackupTransport(config: RelayConfig, log: Logger): Promise<Transport> {
  if (config.spec.backup.gmail.method === 'SmtpRelay') return createSmtpRelayBackupTransport(config, log);
  // Loaded at runtime: the Gmail API client is only needed for method GmailApi.
  const modulePath = './transports/gmail/transport.js';
  const mod = (await import(modulePath)) as { createGmailTransport: (c: RelayConfig, d: { log: Logger }) => Transport };
  return mod.createGmailTransport(config, { log: log.child({ destination: 'backup' }) });
}

export async function startRelay(config: RelayConfig, deps: RelayDeps = {}): Promise<Relay> {
  const log = deps.log ?? pino({ base: { instance: config.instance, component: 'relay' } });
  const metrics = createMetrics({ defaultMetrics: deps.defaultMetrics ?? false });
  const t = config.tuning;
  const spool = new Spool(config.paths.spool, { log: log.child({ part: 'spool' }), fsync: t.fsync, minFreeBytes: t.spoolMinFreeBytes, bodyCacheBytes: t.bodyCacheBytes, receivingBytes: t.receivingBytes });
  await spool.init();
  const a = config.spec.policy.audit;
  const audit = new AuditLog(config.paths.audit ?? join(config.paths.spool, 'audit.log'), config.instance, log.child({ part: 'audit' }), {
    maxFileBytes: a.maxFileBytes,
    retainFiles: a.retainFiles,
    retainForMs: a.retainFor === undefined ? Infinity : parseDuration(a.retainFor),
  });
  await audit.open();
  const readAdminToken = async () => (config.paths.adminToken ? (await readFile(config.paths.adminToken, 'utf8')).trim() || undefined : undefined);
  let adminToken = await readAdminToken();
  // Assigned to in place when the credential files change (SecretFiles below): the transport reads it at each AUTH.
  const primaryAuth = deps.transports?.primary ? undefined : await readPrimaryAuth(config);
  // spec.relay.recipients: the list, replaced when its ConfigMap changes (a list that does not parse keeps the previous one).
  const readRecipients = async () => (config.paths.recipients ? parseRecipientList(await readFile(config.paths.recipients, 'utf8'), `paths.recipients (${config.paths.recipients})`) : undefined);
  let recipients = await readRecipients();
  const failover = new FailoverState({
    active: config.spec.failover.manual === 'Active',
    replayMaxMessagesPerSecond: config.spec.recovery.maxMessagesPerSecond,
  });
  const transports: Record<Destination, Transport> = {
    primary: deps.transports?.primary ?? (await createPrimaryTransport(config, log, primaryAuth)),
    backup: deps.transports?.backup ?? (await createBackupTransport(config, log)),
  };
  const scheduler = new Scheduler({ config, spool, transports, audit, metrics, failover, log: log.child({ part: 'scheduler' }) });
  // The journal's compaction writes the queue as the scheduler holds it.
  spool.journal.setLive(() => scheduler.states());
  const recovered = await spool.load();
  for (const state of recovered) scheduler.add(state, { recovered: true });
  if (recovered.length > 0) log.info({ messages: recovered.length }, 'resumed from the spool');
  // This replica's share of each Gmail mailbox's quota, as last told (control/quota-share.ts).
  const mailboxQuota = await quotaShareOf(transports.backup, config.paths.spool, log);
  scheduler.start();
  const dead = new DeadLetters(spool.deadDir, deadLimits(config), (r) => {
    metrics.deadBytes.set({ instance: config.instance }, r.bytes);
    metrics.deadMessages.set({ instance: config.instance }, r.messages);
    for (const x of r.removed) metrics.deadRemoved.inc({ instance: config.instance, reason: x.reason });
  }, log.child({ part: 'dead' }));
  metrics.deadMaxBytes.set({ instance: config.instance }, dead.limits.maxBytes);
  dead.start(t.deadSweepIntervalMs);

  // The Gmail side checked by a token grant every few minutes (BackupReachable), not only by deliveries.
  const backupCheck = deps.transports?.backup
    ? undefined
    : await startBackupCheck(config, log.child({ part: 'backup-check' }), (ok) => metrics.backupTokenOk.set({ instance: config.instance }, ok ? 1 : 0));

  let stopping = false;
  let inbound: Inbound | undefined;
  let http: Server | undefined;
  const drain = new Drain({
    queued: () => {
      const f = scheduler.facts();
      return f.queuedPrimary + f.queuedBackup;
    },
    sessions: () => inbound?.clients() ?? 0,
    log,
  });
  try {
    inbound = await startInbound({ config, spool, queue: drain.intake(scheduler), metrics, log: log.child({ part: 'inbound' }), ...(recipients ? { recipients: () => recipients } : {}) });
    http = await startHttp(config.http.host, config.http.port, {
      registry: metrics.registry,
      failover,
      facts: () => scheduler.facts(),
      drain,
      backupCheck: () => backupCheck?.snapshot(),
      queue: { ops: scheduler.queueOps(), audit },
      ...(mailboxQuota ? { mailboxQuota } : {}),
      adminToken: () => adminToken,
      log: log.child({ part: 'http' }),
      ready: () => {
        const draining = drain.notReadyReason();
        return stopping ? { ready: false, reason: 'stopping' } : draining ? { ready: false, reason: draining } : { ready: true };
      },
    });
  } catch (e) {
    await backupCheck?.stop();
    await inbound?.close(1000);
    await scheduler.stop(1000);
    throw e;
  }
  const smtpPort = inbound.port;
  const hp = httpPort(http);
  // Mounted Secrets re-read when they change (cert-manager renews the certificate in place).
  const secrets = new SecretFiles(log.child({ part: 'secrets' }));
  const started = inbound;
  await secrets.watch('tls', [config.paths.tlsCert, config.paths.tlsKey], async () => void (await started.reloadTls()));
  await secrets.watch('admin-token', [config.paths.adminToken], async () => {
    adminToken = await readAdminToken();
  });
  if (primaryAuth) {
    await secrets.watch('primary-credentials', [config.paths.primaryUsername, config.paths.primaryPassword], async () => {
      const fresh = await readPrimaryAuth(config);
      if (!fresh) throw new Error('paths.primaryUsername or paths.primaryPassword cannot be read');
      Object.assign(primaryAuth, fresh);
    });
  }
  await secrets.watch('recipients', [config.paths.recipients], async () => {
    recipients = await readRecipients();
  });
  const backup = transports.backup;
  if (backup.reloadSecrets) await secrets.watch('gmail-service-account', [config.paths.gmailServiceAccount], () => backup.reloadSecrets!());
  secrets.start(t.secretPollMs);
  log.info({ smtpPort, httpPort: hp, mode: config.spec.mode, backup: config.spec.backup.gmail.method }, 'relay started');

  return {
    smtpPort,
    httpPort: hp,
    config,
    spool,
    scheduler,
    failover,
    drain,
    metrics,
    log,
    async stop() {
      if (stopping) return;
      stopping = true;
      await backupCheck?.stop();
      await inbound.close();
      await scheduler.stop();
      await dead.stop();
      await secrets.stop();
      await Promise.all([transports.primary.close(), transports.backup.close()]).catch(() => undefined);
      await audit.close();
      await spool.close();
      http.closeAllConnections();
      await new Promise<void>((r) => http.close(() => r()));
      log.info('relay stopped');
    },
  };
}
