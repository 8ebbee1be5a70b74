// dead/, bounded: mail refused for good or past the spool's retention waits
// there for a human (`mail-continuity dead export|purge`), but not forever and
// not without limit: entries older than the dead retention are removed, then
// the oldest ones while dead/ holds more than its cap. Without this, ~300
// messages of 35 MiB to an unknown user fill a 10 GiB spool and stop intake.
// The decision is pure (deadToRemove); DeadLetters applies it on a timer.
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { RelayConfig } from '../../api/relay/config.js';
import { parseDuration, parseQuantity } from '../../api/v1alpha1/formats.js';

export interface DeadEntry {
  id: string;
  /** When it was moved to dead/ (the mtime of its .json, written then). */
  at: number;
  /** Bytes of its .eml and .json. */
  bytes: number;
}

export interface DeadLimits {
  maxBytes: number;
  retentionMs: number;
}

/**
 * The limits a relay runs with (spec.relay.spool.deadLetters): maxSize, else a quarter of the
 * spool volume (spec.relay.persistence.size); retention, else the spool's own retention
 * (spec.relay.spool.retention, 5 days: Postfix's maximal_queue_lifetime).
 */
export function deadLimits(config: Pick<RelayConfig, 'spec'>): DeadLimits {
  const spool = config.spec.relay.spool;
  const d = spool.deadLetters;
  return {
    maxBytes: Math.floor(parseQuantity(d.maxSize ?? config.spec.relay.persistence.size) / (d.maxSize === undefined ? 4 : 1)),
    retentionMs: parseDuration(d.retention ?? spool.retention),
  };
}

export type DeadRemoval = { id: string; reason: 'retention' | 'size' };

/** Entries past the retention, then the oldest ones until the rest fit in maxBytes. */
export function deadToRemove(entries: readonly DeadEntry[], now: number, limits: DeadLimits): DeadRemoval[] {
  const byAge = [...entries].sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1));
  const out: DeadRemoval[] = [];
  let total = byAge.reduce((n, e) => n + e.bytes, 0);
  for (const e of byAge) {
    if (now - e.at > limits.retentionMs) out.push({ id: e.id, reason: 'retention' });
    else if (total > limits.maxBytes) out.push({ id: e.id, reason: 'size' });
    else break;
    total -= e.bytes;
  }
  return out;
}

/** The entries of a dead/ directory (an .eml without its .json counts, dated by the .eml). */
export async function listDead(deadDir: string): Promise<DeadEntry[]> {
  const byId = new Map<string, DeadEntry>();
  for (const f of await readdir(deadDir)) {
    const m = /^([0-9a-f]+)\.(eml|json)$/.exec(f);
    if (!m) continue;
    const s = await stat(join(deadDir, f)).catch(() => undefined);
    if (!s) continue;
    const e = byId.get(m[1]!) ?? { id: m[1]!, at: s.mtimeMs, bytes: 0 };
    e.bytes += s.size;
    if (m[2] === 'json') e.at = s.mtimeMs;
    byId.set(e.id, e);
  }
  return [...byId.values()];
}

/** Removes one entry's files. */
export async function removeDead(deadDir: string, id: string): Promise<void> {
  for (const ext of ['eml', 'json']) {
    await unlink(join(deadDir, `${id}.${ext}`)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }
}

export interface DeadReport {
  messages: number;
  bytes: number;
  removed: DeadRemoval[];
}

/** Applies the limits to dead/ every `intervalMs`, and reports what it holds. */
export class DeadLetters {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly deadDir: string,
    readonly limits: DeadLimits,
    private readonly report: (r: DeadReport) => void,
    private readonly log: Logger,
  ) {}

  start(intervalMs: number): void {
    const tick = () => {
      this.running = this.sweep().catch((e: unknown) => this.log.error({ err: (e as Error).message }, 'dead/ sweep failed'));
    };
    tick();
    this.timer = setInterval(tick, intervalMs);
    this.timer.unref();
  }

  async sweep(now = Date.now()): Promise<DeadReport> {
    const entries = await listDead(this.deadDir);
    const removed = deadToRemove(entries, now, this.limits);
    const gone = new Set<string>();
    for (const r of removed) {
      await removeDead(this.deadDir, r.id);
      gone.add(r.id);
      this.log.warn({ id: r.id, reason: r.reason, maxBytes: this.limits.maxBytes, retentionMs: this.limits.retentionMs }, 'removed a dead letter (spec.relay.spool.deadLetters)');
    }
    const left = entries.filter((e) => !gone.has(e.id));
    const r = { messages: left.length, bytes: left.reduce((n, e) => n + e.bytes, 0), removed };
    this.report(r);
    return r;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
