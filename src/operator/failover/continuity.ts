// The continuity sync loop of each MailContinuity: the I/O half of the
// failover phase. The reconcile decides (plan.ts) and hands the record over
// with set(); a loop per resource tells every relay replica the failover state
// (PUT /admin/failover with the admin token: at once on a new phase, so relays
// act within a second or two) and sums what they answer: messages sent to
// Gmail during the failover, messages replayed, messages still waiting for
// the primary and for Gmail. When a sum changes, onChange asks for a
// reconcile, which folds the numbers into status. Nothing here decides a
// transition, records an Event or computes status.
//
// The sync loop runs every activeSyncMs (default 5 s) during a failover or a
// replay and every idleSyncMs (default 30 s) otherwise — that one re-asserts
// the state on relays that restarted. The sums change only when a relay's
// numbers do, so an idle resource causes no API writes.
import type { Logger } from 'pino';
import type { FailoverSnapshot } from '../../api/relay/admin.js';
import type { MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import { canonical } from '../status.js';
import type { FailoverRecord, RelayTally } from './plan.js';
import type { RelayDirectory } from './relays.js';

/** What a relay answers on /admin/failover; a relay of an older version may leave numbers out. */
export type RelaySnapshot = Pick<FailoverSnapshot, 'active'> & Partial<FailoverSnapshot>;

export interface ContinuityOptions {
  directory: RelayDirectory;
  /** The relays' admin bearer token of a resource (from the operator's Secret), if known yet. */
  token: (mc: MailContinuity) => string | undefined;
  log: Logger;
  /** The relays' numbers for key changed: reconcile it. */
  onChange: (key: string) => void;
  onFailoverState?: (namespace: string, name: string, active: boolean) => void;
  onPushError?: () => void;
  activeSyncMs?: number;
  idleSyncMs?: number;
  requestTimeoutMs?: number;
}

interface Counter {
  /** Last value per relay and what relays that restarted had counted before. */
  last: Map<string, number>;
  carried: number;
}

interface Entry {
  key: string;
  namespace: string;
  name: string;
  mc: MailContinuity;
  record: FailoverRecord;
  toBackup: Counter;
  replayed: Counter;
  tally: RelayTally | undefined;
  timer: NodeJS.Timeout | undefined;
  syncing: Promise<void> | undefined;
  again: boolean;
  stopped: boolean;
}

const newCounter = (): Counter => ({ last: new Map(), carried: 0 });

/** Sum over relays of a per-relay counter that restarts at 0 when the relay does (or the phase does). */
function total(c: Counter, values: Map<string, number>): number {
  for (const [url, v] of values) {
    const prev = c.last.get(url);
    if (prev !== undefined && v < prev) c.carried += prev;
    c.last.set(url, v);
  }
  let sum = c.carried;
  for (const v of c.last.values()) sum += v;
  return sum;
}

export class Continuity {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly opts: ContinuityOptions) {}

  /** The record the reconcile last handed over (undefined: none yet, start from the stored status). */
  record(key: string): FailoverRecord | undefined {
    return this.entries.get(key)?.record;
  }

  /** The relays' numbers for key, as the last sync that any relay answered summed them (its phase says which). */
  tally(key: string): RelayTally | undefined {
    return this.entries.get(key)?.tally;
  }

  /**
   * Holds the record the reconcile decided for mc and starts its sync loop;
   * a new phase (failover started or ended) restarts the counts and is pushed
   * to the relays at once.
   */
  set(mc: MailContinuity, record: FailoverRecord): void {
    const namespace = mc.metadata.namespace ?? 'default';
    const name = mc.metadata.name;
    const key = `${namespace}/${name}`;
    const e = this.entries.get(key);
    if (!e) {
      const created: Entry = {
        key,
        namespace,
        name,
        mc,
        record,
        toBackup: newCounter(),
        replayed: newCounter(),
        tally: undefined,
        timer: undefined,
        syncing: undefined,
        again: false,
        stopped: false,
      };
      this.entries.set(key, created);
      this.opts.onFailoverState?.(namespace, name, record.active);
      this.syncSoon(created, 0);
      return;
    }
    const prev = e.record;
    e.mc = mc;
    e.record = record;
    if (record.phase === prev.phase) return;
    if (record.active !== prev.active) this.opts.onFailoverState?.(namespace, name, record.active);
    // A failover counts its own copies; the replay after it, its own messages.
    if (record.active) e.toBackup = newCounter();
    else e.replayed = newCounter();
    this.syncSoon(e, 0);
  }

  /** Sync key with its relays now (e.g. a relay Pod got its IP). */
  kick(key: string): void {
    const e = this.entries.get(key);
    if (e) this.syncSoon(e, 0);
  }

  /** Forget key (the resource is gone). */
  remove(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    e.stopped = true;
    clearTimeout(e.timer);
    this.entries.delete(key);
    this.opts.onFailoverState?.(e.namespace, e.name, false);
  }

  async stopAll(): Promise<void> {
    const syncing = [...this.entries.values()].map((e) => e.syncing);
    for (const key of [...this.entries.keys()]) this.remove(key);
    await Promise.all(syncing);
  }

  /** The record of key as the reconcile last decided it (tests, metrics). */
  state(key: string): { active: boolean; replaying: boolean; lastFailover?: FailoverRecord['lastFailover'] } | undefined {
    const r = this.entries.get(key)?.record;
    return r && { active: r.active, replaying: r.replaying, ...(r.lastFailover ? { lastFailover: r.lastFailover } : {}) };
  }

  private syncSoon(e: Entry, delayMs: number): void {
    if (e.stopped) return;
    if (e.syncing) {
      e.again = true; // one more right after the one in flight
      return;
    }
    clearTimeout(e.timer);
    e.timer = setTimeout(() => {
      e.timer = undefined;
      e.syncing = this.sync(e).finally(() => {
        e.syncing = undefined;
        if (e.stopped) return;
        const busy = e.record.active || e.record.replaying;
        const next = e.again ? 0 : busy ? (this.opts.activeSyncMs ?? 5000) : (this.opts.idleSyncMs ?? 30_000);
        e.again = false;
        this.syncSoon(e, next);
      });
    }, delayMs);
    e.timer.unref();
  }

  private async sync(e: Entry): Promise<void> {
    const urls = this.opts.directory.endpoints(e.namespace, e.name);
    const token = this.opts.token(e.mc);
    if (urls.length === 0 || !token) return;
    // The replay rate of the spec is for all replicas together.
    const share = Math.max(1, Math.ceil(e.mc.spec.recovery.maxMessagesPerSecond / urls.length));
    const { phase, active } = e.record;
    const body = JSON.stringify({ active, maxMessagesPerSecond: share });
    const answers = await Promise.all(urls.map((url) => this.push(e, url, token, body)));
    if (e.stopped || phase !== e.record.phase) return; // a new phase meanwhile: the next sync reports
    const got = answers.filter((a): a is readonly [string, RelaySnapshot] => a !== undefined);
    if (got.length === 0) return;
    const sum = (f: (s: RelaySnapshot) => number | undefined) => got.reduce((n, [, s]) => n + (f(s) ?? 0), 0);
    const tally: RelayTally = {
      phase,
      answered: got.length,
      endpoints: urls.length,
      messagesToBackup: total(e.toBackup, new Map(got.map(([u, s]) => [u, s.messagesToBackup ?? 0]))),
      messagesReplayed: total(e.replayed, new Map(got.map(([u, s]) => [u, s.messagesReplayed ?? 0]))),
      queuedPrimary: sum((s) => s.queuedPrimary),
      queuedBackup: sum((s) => s.queuedBackup),
      replaying: got.some(([, s]) => s.replaying),
      backup: {
        up: got.filter(([, s]) => s.backup === 'up').length,
        down: got.filter(([, s]) => s.backup === 'down').length,
        unknown: got.filter(([, s]) => s.backup !== 'up' && s.backup !== 'down').length,
      },
    };
    const changed = canonical(tally) !== canonical(e.tally ?? null);
    e.tally = tally;
    if (changed) this.opts.onChange(e.key);
  }

  private async push(e: Entry, url: string, token: string, body: string) {
    try {
      const res = await fetch(`${url}/admin/failover`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(this.opts.requestTimeoutMs ?? 3000),
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
      return [url, (await res.json()) as RelaySnapshot] as const;
    } catch (err) {
      this.opts.onPushError?.();
      this.opts.log.warn({ key: e.key, relay: url, err: (err as Error).message }, 'could not tell a relay the failover state');
      return undefined;
    }
  }
}
