// Hysteresis of the primary's health: a pure state machine over probe results.
//
//   Unknown   --1 success-------------------------->  Healthy
//   Unknown   --failureThreshold failures in a row-->  Unhealthy
//   Healthy   --failureThreshold failures in a row-->  Unhealthy
//   Unhealthy --successThreshold successes in a row->  Healthy
//
// Decision: from Unknown (operator start, or a new primary target) ONE good
// probe makes the primary Healthy. successThreshold guards the way back from
// an outage (the API says "before an unhealthy primary counts as healthy
// again"); at start, waiting for more good probes would only delay nothing
// (no failover is active) and leave PrimaryHealthy=Unknown longer. Failures
// always need failureThreshold in a row, also from Unknown. A success resets
// the failure count, so a primary that fails one probe out of N never becomes
// Unhealthy while failureThreshold > 1.
//
// The PrimaryHealthy condition is stable while the state is: its message holds
// no latency or counter, so computing it on every reconcile never causes a
// status write of its own. The numbers are in primaryStatus().
import type { Condition, MailContinuityStatus } from '../../api/v1alpha1/mailcontinuity.js';
import type { ProbeResult } from './probe.js';

export const PRIMARY_HEALTHY = 'PrimaryHealthy';

export interface Thresholds {
  failureThreshold: number;
  successThreshold: number;
}

export type FailedProbe = Extract<ProbeResult, { ok: false }>;

export interface HealthState {
  /** undefined: Unknown (not probed yet, or failing but below failureThreshold without ever being healthy). */
  healthy: boolean | undefined;
  /** `healthy` changed with this observation. */
  changed: boolean;
  consecutiveFailures: number;
  consecutiveSuccesses: number;
  /** The last probe result (undefined before the first probe). */
  last: ProbeResult | undefined;
  /** The last failed probe, kept while it explains the state (cleared when Healthy). */
  lastFailure: FailedProbe | undefined;
  lastProbeTime: Date | undefined;
  /** When `healthy` last changed (the tracker's creation for Unknown). */
  since: Date;
  failureThreshold: number;
  successThreshold: number;
  /** What is probed, e.g. "exchange.corp.example.com:25 (SMTP with STARTTLS)", for messages. */
  target?: string;
}

export class HealthTracker {
  private state: HealthState;

  constructor(thresholds: Thresholds, opts: { now?: Date; target?: string } = {}) {
    checkThresholds(thresholds);
    this.state = {
      healthy: undefined,
      changed: false,
      consecutiveFailures: 0,
      consecutiveSuccesses: 0,
      last: undefined,
      lastFailure: undefined,
      lastProbeTime: undefined,
      since: opts.now ?? new Date(0),
      ...thresholds,
      ...(opts.target !== undefined ? { target: opts.target } : {}),
    };
  }

  /** The current state (a copy). */
  get current(): HealthState {
    return { ...this.state };
  }

  /** New thresholds (a spec change); the counts are kept and judged at the next observation. */
  setThresholds(t: Thresholds): void {
    checkThresholds(t);
    this.state = { ...this.state, ...t };
  }

  observe(result: ProbeResult, now: Date): HealthState {
    const s = this.state;
    const failures = result.ok ? 0 : s.consecutiveFailures + 1;
    const successes = result.ok ? s.consecutiveSuccesses + 1 : 0;
    let healthy = s.healthy;
    if (result.ok) {
      if (healthy === undefined || (healthy === false && successes >= s.successThreshold)) healthy = true;
    } else if (failures >= s.failureThreshold) {
      healthy = false;
    }
    const changed = healthy !== s.healthy;
    this.state = {
      ...s,
      healthy,
      changed,
      consecutiveFailures: failures,
      consecutiveSuccesses: successes,
      last: result,
      lastFailure: result.ok ? (healthy ? undefined : s.lastFailure) : result,
      lastProbeTime: now,
      since: changed ? now : s.since,
    };
    return this.current;
  }
}

function checkThresholds(t: Thresholds): void {
  for (const [k, v] of Object.entries(t)) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${k} must be an integer >= 1, got ${v}`);
  }
}

export type PrimaryHealthyCondition = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'> & {
  type: typeof PRIMARY_HEALTHY;
};

/** The PrimaryHealthy condition for status.ts's extraConditions. */
export function primaryHealthyCondition(state: HealthState): PrimaryHealthyCondition {
  const what = state.target ? `the primary ${state.target}` : 'the primary';
  if (state.healthy === true) {
    return {
      type: PRIMARY_HEALTHY,
      status: 'True',
      reason: 'ProbeSucceeded',
      message: `${what} passes its health probes`,
    };
  }
  const f = state.lastFailure;
  if (state.healthy === false) {
    // f is always set here: only failures make the primary unhealthy.
    return {
      type: PRIMARY_HEALTHY,
      status: 'False',
      reason: f?.reason ?? 'ProbeFailed',
      message: `${what} failed ${state.failureThreshold} health probes in a row: ${f?.message ?? 'no detail'}`,
    };
  }
  if (!f) {
    return {
      type: PRIMARY_HEALTHY,
      status: 'Unknown',
      reason: 'AwaitingProbe',
      message: `${what} has not been probed yet`,
    };
  }
  return {
    type: PRIMARY_HEALTHY,
    status: 'Unknown',
    reason: f.reason,
    message: `${what} fails its health probes (unhealthy after ${state.failureThreshold} in a row): ${f.message}`,
  };
}

/** RFC 3339 without fractions, as the rest of the status writes times. */
function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** status.primary of the API. */
export function primaryStatus(state: HealthState): NonNullable<MailContinuityStatus['primary']> {
  return {
    ...(state.lastProbeTime ? { lastProbeTime: rfc3339(state.lastProbeTime) } : {}),
    ...(state.last ? { latencyMilliseconds: Math.max(0, Math.round(state.last.latencyMs)) } : {}),
    consecutiveFailures: state.consecutiveFailures,
    consecutiveSuccesses: state.consecutiveSuccesses,
  };
}
