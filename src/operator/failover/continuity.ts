// Continuity events of each MailContinuity: failover start and end, and the
// replay that follows. The reconciler calls observe() with the resource and the
// primary's reported health; observe() decides (decide.ts), records a
// transition in status.lastFailover with an Event, and hands back the status
// parts to write. Apart from the reconciles, a sync loop per resource tells
// every relay replica the failover state (PUT /admin/failover with the admin
// token: at once on a transition, so relays act within a second or two) and
// reads back their numbers: messages sent to Gmail during the failover,
// messages replayed, messages still waiting for the primary.
//
// The sync loop runs every activeSyncMs (default 5 s) during a failover or a
// replay and every idleSyncMs (default 30 s) otherwise — that one re-asserts
// the state on relays that restarted. Status changes only when a number does,
// so an idle resource causes no API writes.
//
// The state survives an operator restart or a leader handover: it is seeded
// from the resource's own status (FailoverActive, lastFailover).
import type { Logger } from 'pino';
import type { FailoverSnapshot } from '../../api/relay/admin.js';
import type { MailContinuity, MailContinuityStatus } from '../../api/v1alpha1/mailcontinuity.js';
import type { EventRecorder } from '../events.js';
import type { HealthState } from '../health/hysteresis.js';
import { decideFailover, FAILOVER_ACTIVE, type FailoverDecision } from './decide.js';
import type { RelayDirectory } from './relays.js';

export type LastFailover = NonNullable<MailContinuityStatus['lastFailover']>;

/** What a relay answers on /admin/failover; a relay of an older version may leave numbers out. */
export type RelaySnapshot = Pick<FailoverSnapshot, 'active'> & Partial<FailoverSnapshot>;

export interface ContinuityOptions {
  directory: RelayDirectory;
  /** The relays' admin bearer token of a resource (from the operator's Secret), if known yet. */
  token: (mc: MailContinuity) => string | undefined;
  recorder: Pick<EventRecorder, 'record'>;
  log: Logger;
  /** Something in the status of key changed: reconcile it. */
  onChange: (key: string) => void;
  onFailoverState?: (namespace: string, name: string, active: boolean) => void;
  onPushError?: () => void;
  activeSyncMs?: number;
  idleSyncMs?: number;
  requestTimeoutMs?: number;
  now?: () => Date;
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
  active: boolean;
  replaying: boolean;
  lastFailover: LastFailover | undefined;
  toBackup: Counter;
  replayed: Counter;
  timer: NodeJS.Timeout | undefined;
  syncing: Promise<void> | undefined;
  again: boolean;
  stopped: boolean;
}

const rfc3339 = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
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
  private readonly now: () => Date;

  constructor(private readonly opts: ContinuityOptions) {
    this.now = opts.now ?? (() => new Date());
  }

  /**
   * Decides the failover state of mc (its spec parsed, its status as stored)
   * and returns the FailoverActive condition and status.lastFailover to write.
   */
  observe(
    mc: MailContinuity,
    health: HealthState | undefined,
  ): { decision: FailoverDecision; lastFailover?: LastFailover } {
    const namespace = mc.metadata.namespace ?? 'default';
    const name = mc.metadata.name;
    const key = `${namespace}/${name}`;
    let e = this.entries.get(key);
    if (!e) {
      const wasActive = mc.status?.conditions?.some((c) => c.type === FAILOVER_ACTIVE && c.status === 'True') ?? false;
      const lf = mc.status?.lastFailover;
      e = {
        key,
        namespace,
        name,
        mc,
        active: wasActive,
        replaying: Boolean(lf?.end && (lf.replayRemaining ?? 0) > 0),
        lastFailover: lf,
        toBackup: newCounter(),
        replayed: newCounter(),
        timer: undefined,
        syncing: undefined,
        again: false,
        stopped: false,
      };
      // After an operator restart the relays still hold their counts: status is only a floor
      // (see the Math.max below), never added to them.
      this.entries.set(key, e);
      this.opts.onFailoverState?.(namespace, name, wasActive);
      this.syncSoon(e, 0);
    }
    e.mc = mc;
    const decision = decideFailover(mc.spec, health, e.active);
    if (decision.active !== e.active) this.transition(e, decision);
    return { decision, ...(e.lastFailover ? { lastFailover: e.lastFailover } : {}) };
  }

  private transition(e: Entry, d: FailoverDecision): void {
    const now = rfc3339(this.now());
    e.active = d.active;
    this.opts.onFailoverState?.(e.namespace, e.name, d.active);
    if (d.active) {
      e.replaying = false;
      e.toBackup = newCounter();
      e.lastFailover = { start: now, trigger: d.trigger!, messagesToBackup: 0 };
      this.opts.log.warn({ key: e.key, trigger: d.trigger, reason: d.condition.reason }, 'failover started');
      void this.opts.recorder.record(
        e.mc,
        'Warning',
        'FailoverStarted',
        `${d.trigger} failover: ${d.condition.message}`,
      );
    } else {
      e.replaying = true;
      e.replayed = newCounter();
      e.lastFailover = { ...e.lastFailover, end: now, messagesReplayed: 0 };
      this.opts.log.info({ key: e.key, reason: d.condition.reason }, 'failover ended, replay starts');
      void this.opts.recorder.record(
        e.mc,
        'Normal',
        'FailoverEnded',
        `failover ended (${d.condition.message}); ${e.lastFailover.messagesToBackup ?? 0} messages went to Gmail during it; replaying missed mail to the primary`,
      );
    }
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

  /** The state of key as the sync loop last saw it (tests, metrics). */
  state(key: string): { active: boolean; replaying: boolean; lastFailover?: LastFailover } | undefined {
    const e = this.entries.get(key);
    return (
      e && { active: e.active, replaying: e.replaying, ...(e.lastFailover ? { lastFailover: e.lastFailover } : {}) }
    );
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
        const busy = e.active || e.replaying;
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
    const body = JSON.stringify({ active: e.active, maxMessagesPerSecond: share });
    const active = e.active;
    const answers = await Promise.all(
      urls.map(async (url) => {
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
          this.opts.log.warn(
            { key: e.key, relay: url, err: (err as Error).message },
            'could not tell a relay the failover state',
          );
          return undefined;
        }
      }),
    );
    if (e.stopped || active !== e.active) return; // a transition happened meanwhile: the next sync reports
    const got = answers.filter((a): a is readonly [string, RelaySnapshot] => a !== undefined);
    if (got.length === 0) return;
    const before = JSON.stringify(e.lastFailover ?? null);
    if ((e.active || e.replaying) && e.lastFailover) {
      // During the replay too: copies made in the last seconds of the failover (the relays keep
      // their count until the next failover).
      const toBackup = total(e.toBackup, new Map(got.map(([u, s]) => [u, s.messagesToBackup ?? 0])));
      e.lastFailover = {
        ...e.lastFailover,
        messagesToBackup: Math.max(toBackup, e.lastFailover.messagesToBackup ?? 0),
      };
    }
    if (e.replaying && e.lastFailover) {
      const replayed = total(e.replayed, new Map(got.map(([u, s]) => [u, s.messagesReplayed ?? 0])));
      const remaining = got.reduce((n, [, s]) => n + (s.queuedPrimary ?? 0), 0);
      const done = got.length === urls.length && got.every(([, s]) => !s.replaying) && remaining === 0;
      e.lastFailover = {
        ...e.lastFailover,
        messagesReplayed: Math.max(replayed, e.lastFailover.messagesReplayed ?? 0),
        replayRemaining: remaining,
      };
      if (done) {
        e.replaying = false;
        this.opts.log.info({ key: e.key, replayed: e.lastFailover.messagesReplayed }, 'replay completed');
        void this.opts.recorder.record(
          e.mc,
          'Normal',
          'ReplayCompleted',
          `the primary has every message it missed: ${e.lastFailover.messagesReplayed ?? 0} replayed after the failover that started ${e.lastFailover.start ?? ''}`,
        );
      }
    }
    if (JSON.stringify(e.lastFailover ?? null) !== before) this.opts.onChange(e.key);
  }
}
