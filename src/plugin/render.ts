// What the plugin prints: tables for people, the same data as JSON or YAML
// for scripts. Pure: data in, text out.
import YAML from 'yaml';
import type { MC } from './relays.js';

export type Output = 'table' | 'json' | 'yaml';

/** One relay's queue as its admin API lists it (control/queue-admin.ts queueItem). */
export interface QueueItem {
  id: string;
  messageId: string | null;
  from: string;
  to: string[];
  ageSeconds: number;
  state: string;
  destinations: Record<string, { pending: string[]; attempts: number; lastError?: string }>;
}

export interface PodQueue {
  pod: string;
  items?: QueueItem[];
  /** Why the relay could not be asked. */
  error?: string;
}

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('   ').trimEnd()).join('\n') + '\n';
}

export function age(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

const cond = (mc: MC, type: string) => mc.status?.conditions?.find((c) => c.type === type);

/** Per relay: messages waiting per destination, held, deferred, the oldest's age. */
export function podSummary(q: PodQueue) {
  const items = q.items ?? [];
  const waiting = (dest: string) => items.filter((i) => (i.destinations[dest]?.pending.length ?? 0) > 0).length;
  return {
    pod: q.pod,
    ...(q.error ? { error: q.error } : {}),
    queuedPrimary: waiting('primary'),
    queuedBackup: waiting('backup'),
    held: items.filter((i) => i.state === 'held').length,
    deferred: items.filter((i) => i.state === 'deferred').length,
    oldestSeconds: items.reduce((m, i) => Math.max(m, i.ageSeconds), 0),
  };
}

export function statusData(mc: MC, pods: PodQueue[]) {
  const c = (type: string) => {
    const x = cond(mc, type);
    return x ? { status: x.status, reason: x.reason, message: x.message } : undefined;
  };
  return {
    name: mc.metadata.name,
    namespace: mc.metadata.namespace,
    mode: mc.spec.mode,
    manual: mc.spec.failover?.manual ?? 'Auto',
    ready: c('Ready'),
    stalled: c('Stalled'),
    primaryHealthy: c('PrimaryHealthy'),
    failoverActive: c('FailoverActive'),
    backupReachable: c('BackupReachable'),
    primary: mc.status?.primary,
    lastFailover: mc.status?.lastFailover,
    schedule: mc.status?.schedule,
    relays: pods.map(podSummary),
  };
}

export function renderStatus(data: ReturnType<typeof statusData>, output: Output): string {
  if (output === 'json') return JSON.stringify(data, null, 2) + '\n';
  if (output === 'yaml') return YAML.stringify(data);
  const line = (label: string, c: { status: string; reason: string; message: string } | undefined) =>
    `${label.padEnd(16)}${c ? `${c.status} (${c.reason}): ${c.message}` : 'not reported'}`;
  const out = [
    `${data.namespace}/${data.name}   mode ${data.mode}, failover.manual ${data.manual}`,
    line('Ready', data.ready),
    ...(data.stalled?.status === 'True' ? [line('Stalled', data.stalled)] : []),
    line('PrimaryHealthy', data.primaryHealthy),
    line('FailoverActive', data.failoverActive),
    line('BackupReachable', data.backupReachable),
  ];
  const lf = data.lastFailover;
  if (lf?.start) {
    out.push(`${'Last failover'.padEnd(16)}${lf.trigger ?? ''} from ${lf.start}${lf.end ? ` to ${lf.end}` : ' (active)'}: ${lf.messagesToBackup ?? 0} to Gmail, ${lf.messagesReplayed ?? 0} replayed, ${lf.replayRemaining ?? 0} to replay`);
  }
  const w = data.schedule?.activeWindow ?? data.schedule?.nextWindow;
  if (w) out.push(`${(data.schedule?.activeWindow ? 'Window now' : 'Next window').padEnd(16)}${w.start} – ${w.end}${w.description ? ` (${w.description})` : ''}`);
  out.push('');
  const rows = [['RELAY', 'FOR-EXCHANGE', 'FOR-GMAIL', 'HELD', 'DEFERRED', 'OLDEST']];
  for (const r of data.relays) {
    rows.push(r.error ? [r.pod, '-', '-', '-', '-', `unreachable: ${r.error}`] : [r.pod, String(r.queuedPrimary), String(r.queuedBackup), String(r.held), String(r.deferred), r.oldestSeconds ? age(r.oldestSeconds) : '-']);
  }
  if (data.relays.length === 0) out.push('no relay pod found');
  else out.push(table(rows).trimEnd());
  return out.join('\n') + '\n';
}

export function renderQueue(pods: PodQueue[], output: Output): string {
  const flat = pods.flatMap((p) => (p.items ?? []).map((i) => ({ pod: p.pod, ...i })));
  if (output === 'json') return JSON.stringify({ items: flat, errors: pods.filter((p) => p.error).map((p) => ({ pod: p.pod, error: p.error })) }, null, 2) + '\n';
  if (output === 'yaml') return YAML.stringify({ items: flat });
  const rows = [['RELAY', 'ID', 'AGE', 'STATE', 'FROM', 'WAITING-FOR', 'MESSAGE-ID']];
  for (const i of flat) {
    const waiting = Object.entries(i.destinations)
      .filter(([, d]) => d.pending.length > 0)
      .map(([dest, d]) => `${dest === 'primary' ? 'exchange' : 'gmail'}:${d.pending.join(',')}`)
      .join(' ');
    rows.push([i.pod, i.id, age(i.ageSeconds), i.state, i.from, waiting || '-', i.messageId ?? '-']);
  }
  const errors = pods.filter((p) => p.error).map((p) => `${p.pod}: ${p.error}\n`).join('');
  return (flat.length > 0 ? table(rows) : 'no message waiting\n') + errors;
}
