// Prometheus metrics of one relay, in its own Registry (several relays can run
// in one process, as the tests do).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface RelayMetrics {
  registry: Registry;
  accepted: Counter<'instance'>;
  rejected: Counter<'instance' | 'reason'>;
  deliveries: Counter<'instance' | 'destination' | 'outcome'>;
  queueDepth: Gauge<'instance' | 'destination'>;
  spoolBytes: Gauge<'instance'>;
  latency: Histogram<'instance' | 'destination'>;
  deadLettered: Counter<'instance' | 'reason'>;
  deadBytes: Gauge<'instance'>;
  deadMessages: Gauge<'instance'>;
  deadMaxBytes: Gauge<'instance'>;
  deadRemoved: Counter<'instance' | 'reason'>;
  possibleDuplicates: Counter<'instance' | 'destination'>;
  normalisedNewlines: Counter<'instance'>;
  failoverActive: Gauge<'instance'>;
  backupTokenOk: Gauge<'instance'>;
  auditRecords: Counter<'instance' | 'action'>;
  auditWriteFailing: Gauge<'instance'>;
  commits: Counter<'instance'>;
  commitBatches: Gauge<'instance'>;
}

export function createMetrics(opts: { defaultMetrics?: boolean } = {}): RelayMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    accepted: new Counter({ name: 'relay_messages_accepted_total', help: 'Messages answered with 250 (on disk).', labelNames: ['instance'], registers }),
    rejected: new Counter({
      name: 'relay_smtp_rejected_total',
      help: 'SMTP commands or messages refused, by reason.',
      labelNames: ['instance', 'reason'],
      registers,
    }),
    deliveries: new Counter({
      name: 'relay_deliveries_total',
      help: 'Per-recipient delivery outcomes by destination (delivered, deferred, failed).',
      labelNames: ['instance', 'destination', 'outcome'],
      registers,
    }),
    queueDepth: new Gauge({ name: 'relay_queue_depth', help: 'Messages waiting for a destination.', labelNames: ['instance', 'destination'], registers }),
    spoolBytes: new Gauge({ name: 'relay_spool_bytes', help: 'Bytes of message bodies in the spool queue.', labelNames: ['instance'], registers }),
    latency: new Histogram({
      name: 'relay_delivery_latency_seconds',
      help: 'From the 250 to the destination accepting the message.',
      labelNames: ['instance', 'destination'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400],
      registers,
    }),
    deadLettered: new Counter({
      name: 'relay_dead_lettered_total',
      help: 'Recipients or messages moved to dead/ (reason: rejected, retention).',
      labelNames: ['instance', 'reason'],
      registers,
    }),
    deadBytes: new Gauge({ name: 'relay_dead_bytes', help: 'Bytes in dead/ (messages and their states).', labelNames: ['instance'], registers }),
    deadMessages: new Gauge({ name: 'relay_dead_messages', help: 'Messages in dead/.', labelNames: ['instance'], registers }),
    deadMaxBytes: new Gauge({ name: 'relay_dead_max_bytes', help: 'The cap of dead/ (spec.relay.spool.deadLetters.maxSize): beyond it the oldest entries are removed.', labelNames: ['instance'], registers }),
    deadRemoved: new Counter({
      name: 'relay_dead_removed_total',
      help: 'Entries removed from dead/ by the relay (reason: retention, size).',
      labelNames: ['instance', 'reason'],
      registers,
    }),
    possibleDuplicates: new Counter({
      name: 'relay_possible_duplicates_total',
      help: 'Deliveries that were in flight at a crash and are retried (the destination may get them twice).',
      labelNames: ['instance', 'destination'],
      registers,
    }),
    normalisedNewlines: new Counter({
      name: 'relay_bare_newlines_normalised_total',
      help: 'Messages whose bare CR or LF were rewritten to CRLF (SMTP smuggling defence).',
      labelNames: ['instance'],
      registers,
    }),
    failoverActive: new Gauge({ name: 'relay_failover_active', help: '1 while failover is active.', labelNames: ['instance'], registers }),
    backupTokenOk: new Gauge({
      name: 'relay_backup_token_check_ok',
      help: "1 when Google's token endpoint granted the last access token of the backup check (GmailApi), 0 when it refused or could not be reached.",
      labelNames: ['instance'],
      registers,
    }),
    auditWriteFailing: new Gauge({
      name: 'relay_audit_write_failing',
      help: '1 while the audit log cannot be written: copies to the backup (Google) are paused.',
      labelNames: ['instance'],
      registers,
    }),
    commits: new Counter({ name: 'relay_spool_commits_total', help: 'Messages committed to the spool (fsync + rename).', labelNames: ['instance'], registers }),
    commitBatches: new Gauge({
      name: 'relay_spool_commit_batches',
      help: 'Directory fsyncs that committed them (group commit: fewer than commits under concurrency).',
      labelNames: ['instance'],
      registers,
    }),
    auditRecords: new Counter({ name: 'relay_audit_records_total', help: 'Audit log lines by action.', labelNames: ['instance', 'action'], registers }),
  };
}
