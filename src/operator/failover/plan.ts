// The failover phase of a reconcile, as pure functions: from the record the
// operator holds (or the stored status, after a restart), the failover
// decision (decide.ts) and the relays' numbers gathered by the sync loop
// (continuity.ts), the next record and the Events to record. Nothing here
// talks to the API or to a relay; the reconciler acts on the result.
//
//   inactive --decision active-->  active     FailoverStarted, new phase, counts from 0
//   active   --decision inactive-> replaying  FailoverEnded, new phase, replay counted from 0
//   replaying --every relay answered, none replays, none holds mail for the primary-->
//              inactive                       ReplayCompleted
//
// Relay numbers are folded in only when they were gathered in the current
// phase: a sync that answered for the previous phase says nothing about this one.
import type { MailContinuity, MailContinuitySpec, MailContinuityStatus } from '../../api/v1alpha1/mailcontinuity.js';
import type { HealthState } from '../health/hysteresis.js';
import type { TokenGrants } from './backup.js';
import { decideFailover, FAILOVER_ACTIVE, type DecideContext, type FailoverDecision } from './decide.js';

export type LastFailover = NonNullable<MailContinuityStatus['lastFailover']>;

/** What the operator decided about one resource's failover. */
export interface FailoverRecord {
  active: boolean;
  replaying: boolean;
  lastFailover?: LastFailover;
  /** Transitions since the operator took the resource over (0 after a start or a restart). */
  phase: number;
  /** A maintenance window is in progress: the relays deliver nothing to the primary. */
  holdPrimary?: boolean;
}

/** The relays' numbers as the sync loop last summed them, over the relays that answered. */
export interface RelayTally {
  /** The phase of the record that the sync pushed. */
  phase: number;
  /** Relays that answered, and relays known (Pods with an IP, or --local-relay URLs). */
  answered: number;
  endpoints: number;
  /** Copies to Gmail since the failover started (relays that restarted keep counting in). */
  messagesToBackup: number;
  /** Messages replayed to the primary since the failover ended. */
  messagesReplayed: number;
  queuedPrimary: number;
  queuedBackup: number;
  /** Some relay still replays. */
  replaying: boolean;
  /** Relays by what their deliveries to Gmail saw: an answer, none (suspended), no attempt yet. */
  backup: { up: number; down: number; unknown: number };
  /** The relays' token grants against Google's token endpoint (backup.ts: tokenGrants). */
  tokenGrants?: TokenGrants;
  /** Relays whose audit log cannot be written: their copies to Gmail are paused. */
  auditFailing?: number;
}

export interface PlannedEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface FailoverPlan {
  /** Whether failover is active, and the FailoverActive condition. */
  decision: FailoverDecision;
  next: FailoverRecord;
  events: PlannedEvent[];
}

const rfc3339 = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

/** The record a previous operator left in status (FailoverActive, lastFailover): a restart or handover goes on from it. */
export function seedRecord(status: MailContinuity['status']): FailoverRecord {
  const active = status?.conditions?.some((c) => c.type === FAILOVER_ACTIVE && c.status === 'True') ?? false;
  const lf = status?.lastFailover;
  return {
    active,
    replaying: Boolean(lf?.end && (lf.replayRemaining ?? 0) > 0),
    ...(lf ? { lastFailover: lf } : {}),
    phase: 0,
  };
}

/** The failover phase: decide (decide.ts), then the next record and its Events. */
export function planFailover(
  prev: FailoverRecord,
  spec: Pick<MailContinuitySpec, 'mode' | 'failover'>,
  health: HealthState | undefined,
  tally: RelayTally | undefined,
  now: Date,
  ctx: Omit<DecideContext, 'now'> = {},
): FailoverPlan {
  const decision = decideFailover(spec, health, prev.active, { ...ctx, now });
  const planned = nextRecord(prev, decision, tally, now);
  const hold = decision.holdPrimary === true;
  const next = hold === (planned.next.holdPrimary === true) ? planned.next : withHold(planned.next, hold);
  return { decision, next, events: planned.events };
}

const withHold = (r: FailoverRecord, hold: boolean): FailoverRecord => {
  const { holdPrimary: _, ...rest } = r;
  return hold ? { ...rest, holdPrimary: true } : rest;
};

function nextRecord(
  prev: FailoverRecord,
  decision: FailoverDecision,
  tally: RelayTally | undefined,
  now: Date,
): Omit<FailoverPlan, 'decision'> {
  if (decision.active !== prev.active) return transition(prev, decision, now);
  if (!tally || tally.phase !== prev.phase || !prev.lastFailover || !(prev.active || prev.replaying)) {
    return { next: prev, events: [] };
  }
  // Status is only a floor: after an operator restart the relays still hold their counts.
  let lf: LastFailover = {
    ...prev.lastFailover,
    // During the replay too: copies made in the last seconds of the failover.
    messagesToBackup: Math.max(tally.messagesToBackup, prev.lastFailover.messagesToBackup ?? 0),
  };
  if (!prev.replaying) return { next: { ...prev, lastFailover: lf }, events: [] };
  lf = {
    ...lf,
    messagesReplayed: Math.max(tally.messagesReplayed, lf.messagesReplayed ?? 0),
    replayRemaining: tally.queuedPrimary,
  };
  const done = tally.answered === tally.endpoints && !tally.replaying && tally.queuedPrimary === 0;
  if (!done) return { next: { ...prev, lastFailover: lf }, events: [] };
  return {
    next: { ...prev, replaying: false, lastFailover: lf },
    events: [
      {
        type: 'Normal',
        reason: 'ReplayCompleted',
        message: `the primary has every message it missed: ${lf.messagesReplayed ?? 0} replayed after the failover that started ${lf.start ?? ''}`,
      },
    ],
  };
}

function transition(prev: FailoverRecord, d: FailoverDecision, now: Date): Omit<FailoverPlan, 'decision'> {
  const at = rfc3339(now);
  if (d.active) {
    return {
      next: {
        active: true,
        replaying: false,
        lastFailover: { start: at, trigger: d.trigger!, messagesToBackup: 0 },
        phase: prev.phase + 1,
      },
      events: [{ type: 'Warning', reason: 'FailoverStarted', message: `${d.trigger} failover: ${d.condition.message}` }],
    };
  }
  const lf: LastFailover = { ...prev.lastFailover, end: at, messagesReplayed: 0 };
  return {
    next: { active: false, replaying: true, lastFailover: lf, phase: prev.phase + 1 },
    events: [
      {
        type: 'Normal',
        reason: 'FailoverEnded',
        message: `${prev.lastFailover?.trigger === 'Scheduled' ? 'the maintenance window is over: ' : ''}failover ended (${d.condition.message}); ${lf.messagesToBackup ?? 0} messages went to Gmail during it; replaying missed mail to the primary`,
      },
    ],
  };
}
