// One probe loop per MailContinuity key: probes the primary every
// health.periodSeconds (jittered ±5 %, measured from the start of the previous
// probe), feeds a HealthTracker and tells the controller when to write status.
//
// No status write per probe: onChange(key, state) is called
//   - after the first probe of a new target,
//   - whenever the PrimaryHealthy condition changes (status, reason or message;
//     the message holds no counters, so a stable primary never changes it),
//   - otherwise at most every statusIntervalMs (default 30 s) so that
//     status.primary (lastProbeTime, latency, counters) stays fresh.
// reported(key) returns the state of the last onChange: the reconcile should
// build status from it (not from current(key)), so a reconcile triggered by
// something else does not write fresher numbers each time.
//
// ensure() with a changed spec restarts the loop with the new settings. The
// health verdict survives a change of period, timeout or thresholds; a change
// of what is probed (host, port, tls, certificate check, https probe) starts
// from Unknown. Probes of one key never overlap (a restart waits for the
// probe in flight), timers are unref'ed, stopAll() waits for probes in flight.
import type { HealthState } from './hysteresis.js';
import { HealthTracker, primaryHealthyCondition } from './hysteresis.js';
import { canonical } from '../status.js';
import { probePrimary, type PrimarySpec, type ProbeResult } from './probe.js';

export type ProbeFn = (primary: PrimarySpec, opts: { timeoutMs: number }) => Promise<ProbeResult>;

export interface ProbeLoopOptions {
  onChange: (key: string, state: HealthState) => void;
  /** Default: probePrimary. */
  probe?: ProbeFn;
  /** Longest time without onChange while probes run (default 30 000 ms). */
  statusIntervalMs?: number;
  /** Relative jitter of the period (default 0.1: ±5 %). */
  jitter?: number;
  /** Called when onChange throws. */
  onError?: (key: string, err: unknown) => void;
  now?: () => Date;
  random?: () => number;
}

interface Entry {
  key: string;
  spec: PrimarySpec;
  fingerprint: string;
  targetFingerprint: string;
  tracker: HealthTracker;
  stopped: boolean;
  timer: NodeJS.Timeout | undefined;
  inflight: Promise<void> | undefined;
  reported: HealthState | undefined;
  reportedCondition: string | undefined;
  reportedAt: number;
}

/** What is probed: a change means the old verdict says nothing about the new target. */
function targetOf(p: PrimarySpec): unknown {
  return {
    host: p.host,
    port: p.port,
    tls: p.tls,
    insecureSkipTLSVerify: p.insecureSkipTLSVerify,
    caBundle: p.caBundle ?? null,
    smtp: p.health.smtp.enabled,
    https: p.health.https ?? null,
  };
}

/** "host:25 (SMTP with STARTTLS) and https://…" for condition messages. */
export function describeTarget(p: PrimarySpec): string {
  const parts: string[] = [];
  if (p.health.smtp.enabled) parts.push(`${p.host}:${p.port} (SMTP${p.tls === 'None' ? '' : ` with ${p.tls} TLS`})`);
  if (p.health.https) parts.push(p.health.https.url);
  return parts.length > 0 ? parts.join(' and ') : `${p.host}:${p.port} (no probe enabled)`;
}

export class ProbeLoop {
  private readonly entries = new Map<string, Entry>();
  private readonly probe: ProbeFn;
  private readonly statusIntervalMs: number;
  private readonly jitter: number;
  private readonly now: () => Date;
  private readonly random: () => number;

  constructor(private readonly opts: ProbeLoopOptions) {
    this.probe = opts.probe ?? ((primary, o) => probePrimary(primary, o));
    this.statusIntervalMs = opts.statusIntervalMs ?? 30_000;
    this.jitter = opts.jitter ?? 0.1;
    this.now = opts.now ?? (() => new Date());
    this.random = opts.random ?? Math.random;
  }

  /** Starts the loop of key, or restarts it when the spec changed. */
  ensure(key: string, primary: PrimarySpec): void {
    const fingerprint = canonical(primary);
    const old = this.entries.get(key);
    if (old && old.fingerprint === fingerprint) return;
    const targetFingerprint = canonical(targetOf(primary));
    const thresholds = {
      failureThreshold: primary.health.failureThreshold,
      successThreshold: primary.health.successThreshold,
    };
    let tracker: HealthTracker;
    if (old && old.targetFingerprint === targetFingerprint) {
      tracker = old.tracker;
      tracker.setThresholds(thresholds);
    } else {
      tracker = new HealthTracker(thresholds, { now: this.now(), target: describeTarget(primary) });
    }
    const previous = old?.inflight;
    if (old) this.halt(old);
    const entry: Entry = {
      key,
      spec: primary,
      fingerprint,
      targetFingerprint,
      tracker,
      stopped: false,
      timer: undefined,
      inflight: undefined,
      // A restart on the same target keeps the reported state: no extra write.
      reported: old && tracker === old.tracker ? old.reported : undefined,
      reportedCondition: old && tracker === old.tracker ? old.reportedCondition : undefined,
      reportedAt: old && tracker === old.tracker ? old.reportedAt : 0,
    };
    this.entries.set(key, entry);
    // First probe soon, spread over a tenth of the period; never while the old loop's probe runs.
    const first = this.random() * Math.min(1000, primary.health.periodSeconds * 100);
    if (previous) {
      entry.inflight = previous.then(() => {
        entry.inflight = undefined;
        if (!entry.stopped) this.schedule(entry, first);
      });
    } else {
      this.schedule(entry, first);
    }
  }

  /** Stops the loop of key; resolves when its probe in flight (if any) is done. */
  async remove(key: string): Promise<void> {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.halt(e);
    await e.inflight;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.entries.keys()].map((k) => this.remove(k)));
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** The live state (changes with every probe). */
  current(key: string): HealthState | undefined {
    return this.entries.get(key)?.tracker.current;
  }

  /** The state last given to onChange: what status should show. */
  reported(key: string): HealthState | undefined {
    return this.entries.get(key)?.reported;
  }

  /**
   * reported(key), but only while it speaks of what primary says to probe: a
   * new target starts from Unknown (as ensure() will), a new period or new
   * thresholds keep the verdict. Reads only: the reconcile gathers with it.
   */
  reportedFor(key: string, primary: PrimarySpec): HealthState | undefined {
    const e = this.entries.get(key);
    return e && e.targetFingerprint === canonical(targetOf(primary)) ? e.reported : undefined;
  }

  private halt(e: Entry): void {
    e.stopped = true;
    if (e.timer) clearTimeout(e.timer);
    e.timer = undefined;
  }

  private schedule(e: Entry, delayMs: number): void {
    if (e.stopped) return;
    e.timer = setTimeout(
      () => {
        e.timer = undefined;
        e.inflight = this.runOnce(e);
      },
      Math.max(0, delayMs),
    );
    e.timer.unref();
  }

  private async runOnce(e: Entry): Promise<void> {
    const started = Date.now();
    const period = e.spec.health.periodSeconds * 1000;
    let result: ProbeResult;
    try {
      result = await this.probe(e.spec, { timeoutMs: e.spec.health.timeoutSeconds * 1000 });
    } catch (err) {
      // probePrimary never throws; an injected probe might.
      result = { ok: false, latencyMs: Date.now() - started, reason: 'ConnectionReset', message: String(err) };
    }
    e.inflight = undefined;
    if (e.stopped) return;
    const state = e.tracker.observe(result, this.now());
    const cond = primaryHealthyCondition(state);
    const condKey = `${cond.status}\u0000${cond.reason}\u0000${cond.message}`;
    const nowMs = Date.now();
    if (e.reported === undefined || condKey !== e.reportedCondition || nowMs - e.reportedAt >= this.statusIntervalMs) {
      e.reported = state;
      e.reportedCondition = condKey;
      e.reportedAt = nowMs;
      try {
        this.opts.onChange(e.key, state);
      } catch (err) {
        this.opts.onError?.(e.key, err);
      }
    }
    const jittered = period * (1 + this.jitter * (this.random() - 0.5));
    this.schedule(e, jittered - (Date.now() - started));
  }
}
