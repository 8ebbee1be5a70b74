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
// The same call gives each replica its share of the replay rate
// (spec.recovery.maxMessagesPerSecond) and, with the GmailApi backup, of each
// mailbox's Gmail quota (gmailUnitsPerMinute): both are for all replicas
// together, so the shares follow the number of relays at every sync.
//
// The same call tells the replicas a scale-down removes to drain
// (`draining: true`, the set the reconcile decided in reconcile/scale-down.ts),
// and a replica that said it drains but is no longer in that set to take mail
// again (`draining: false`; the field is left out otherwise, for relays that
// predate it). Each replica's answer is kept by Pod name (relays()) for the
// reconcile to judge the drain; a change there also asks for a reconcile.
//
// The sync loop runs every activeSyncMs (default 5 s) during a failover or a
// replay and every idleSyncMs (default 30 s) otherwise — that one re-asserts
// the state on relays that restarted. The sums change only when a relay's
// numbers do, so an idle resource causes no API writes.
import type { Logger } from 'pino';
import { mailboxQuotaShare, type FailoverSnapshot } from '../../api/relay/admin.js';
import type { MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import type { RelayReport, ScaleDown } from '../reconcile/scale-down.js';
import { canonical } from '../status.js';
import { tokenGrants } from './backup.js';
import type { FailoverRecord, RelayTally } from './plan.js';
import type { RelayDirectory, RelayEndpoint } from './relays.js';

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
  /** Pods told to drain, the scale-down the reconcile remembers, each relay's last answer. */
  drain: Set<string>;
  scale: ScaleDown | undefined;
  reports: RelayReport[] | undefined;
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
        drain: new Set(),
        scale: undefined,
        reports: undefined,
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
    if (record.phase === prev.phase) {
      // The end of a maintenance window while the failover goes on (the primary failed meanwhile).
      if (Boolean(record.holdPrimary) !== Boolean(prev.holdPrimary)) this.syncSoon(e, 0);
      return;
    }
    if (record.active !== prev.active) this.opts.onFailoverState?.(namespace, name, record.active);
    // A failover counts its own copies; the replay after it, its own messages.
    if (record.active) e.toBackup = newCounter();
    else e.replayed = newCounter();
    this.syncSoon(e, 0);
  }

  /** Each relay's answer to the last sync of key, by Pod (undefined: no sync yet). */
  relays(key: string): RelayReport[] | undefined {
    return this.entries.get(key)?.reports;
  }

  /** The scale-down the reconcile last decided for key. */
  scaleDown(key: string): ScaleDown | undefined {
    return this.entries.get(key)?.scale;
  }

  /** The Pods of key to drain and the scale-down under way; a new set is pushed at once. */
  drain(key: string, pods: string[], scale: ScaleDown | undefined): void {
    const e = this.entries.get(key);
    if (!e) return;
    e.scale = scale;
    const next = new Set(pods);
    if (next.size === e.drain.size && pods.every((p) => e.drain.has(p))) return;
    e.drain = next;
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
        const busy = e.record.active || e.record.replaying || e.drain.size > 0;
        const next = e.again ? 0 : busy ? (this.opts.activeSyncMs ?? 5000) : (this.opts.idleSyncMs ?? 30_000);
        e.again = false;
        this.syncSoon(e, next);
      });
    }, delayMs);
    e.timer.unref();
  }

  private async sync(e: Entry): Promise<void> {
    const relays = this.opts.directory.endpoints(e.namespace, e.name);
    const token = this.opts.token(e.mc);
    if (!token) return;
    if (relays.length === 0) return this.report(e, []);
    // The replay rate of the spec is for all replicas together.
    const share = Math.max(1, Math.ceil(e.mc.spec.recovery.maxMessagesPerSecond / relays.length));
    // So is Gmail's quota of each mailbox: split across every relay that may import (the replicas
    // the spec asks for, or more while removed ones drain: they deliver their spool meanwhile).
    const gmail =
      e.mc.spec.backup.gmail.method === 'GmailApi'
        ? { gmailUnitsPerMinute: mailboxQuotaShare(Math.max(relays.length, e.mc.spec.relay.replicas)) }
        : {};
    const { phase, active } = e.record;
    const said = new Map((e.reports ?? []).map((r) => [r.pod, r.draining]));
    const bodyOf = ({ pod }: RelayEndpoint) => {
      const draining = e.drain.has(pod) ? true : said.get(pod) ? false : undefined;
      return JSON.stringify({
        active,
        maxMessagesPerSecond: share,
        ...gmail,
        // Left out when false, for relays that predate maintenance windows.
        ...(e.record.holdPrimary ? { holdPrimary: true } : {}),
        ...(draining !== undefined ? { draining } : {}),
      });
    };
    const answers = await Promise.all(relays.map((r) => this.push(e, r.url, token, bodyOf(r))));
    if (e.stopped) return;
    this.report(
      e,
      relays.map(({ pod }, i) => {
        const s = answers[i]?.[1];
        return s ? { pod, answered: true, draining: s.draining, queuedPrimary: s.queuedPrimary, queuedBackup: s.queuedBackup, smtpSessions: s.smtpSessions } : { pod, answered: false };
      }),
    );
    if (phase !== e.record.phase) return; // a new phase meanwhile: the next sync reports
    const got = answers.filter((a): a is readonly [string, RelaySnapshot] => a !== undefined);
    if (got.length === 0) return;
    const sum = (f: (s: RelaySnapshot) => number | undefined) => got.reduce((n, [, s]) => n + (f(s) ?? 0), 0);
    const tally: RelayTally = {
      phase,
      answered: got.length,
      endpoints: relays.length,
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
      ...tokenGrants(got.map(([, s]) => s.backupCheck)),
      auditFailing: got.filter(([, s]) => s.auditFailing === true).length,
    };
    const changed = canonical(tally) !== canonical(e.tally ?? null);
    e.tally = tally;
    if (changed) this.opts.onChange(e.key);
  }

  /** Keeps each relay's answer; asks for a reconcile when what a drain is judged on changed. */
  private report(e: Entry, reports: RelayReport[]): void {
    const judged = (rs: RelayReport[] | undefined) =>
      canonical((rs ?? []).map((r) => (e.drain.has(r.pod) || r.draining ? r : { pod: r.pod, answered: r.answered })));
    const changed = judged(reports) !== judged(e.reports);
    e.reports = reports;
    if (changed && (e.drain.size > 0 || reports.some((r) => r.draining))) this.opts.onChange(e.key);
  }

  private async push(e: Entry, url: string, token: string, body: string) {
    try {
      const put = (text: string) =>
        fetch(`${url}/admin/failover`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: text,
          signal: AbortSignal.timeout(this.opts.requestTimeoutMs ?? 3000),
        });
      let res = await put(body);
      if (res.status === 400 && body.includes('"gmailUnitsPerMinute"')) {
        // A relay older than the Gmail quota share refuses the unknown field (its update is
        // strict): it still gets the failover state, during an upgrade's rolling restart too.
        const refusal = await res.text();
        if (!refusal.includes('gmailUnitsPerMinute')) throw new Error(`HTTP 400: ${refusal.slice(0, 200)}`);
        res = await put(JSON.stringify({ ...(JSON.parse(body) as object), gmailUnitsPerMinute: undefined }));
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
      return [url, (await res.json()) as RelaySnapshot] as const;
    } catch (err) {
      this.opts.onPushError?.();
      this.opts.log.warn({ key: e.key, relay: url, err: (err as Error).message }, 'could not tell a relay the failover state');
      return undefined;
    }
  }
}
