// The failover phase as pure functions: the next record and its Events from
// the previous record, the decision and the relays' numbers; and the
// BackupReachable condition from what the relays report.
import { describe, expect, it } from '@jest/globals';
import { MailContinuitySpec } from '../../src/api/v1alpha1/mailcontinuity.js';
import { backupReachableCondition } from '../../src/operator/failover/backup.js';
import { planFailover, seedRecord, type FailoverRecord, type RelayTally } from '../../src/operator/failover/plan.js';
import { HealthTracker, type HealthState } from '../../src/operator/health/hysteresis.js';
import { validSpec } from '../fixtures/mailcontinuity.js';

const spec = MailContinuitySpec.parse(validSpec());
const NOW = new Date('2026-12-03T10:00:00.789Z');

function health(healthy: boolean): HealthState {
  const t = new HealthTracker({ failureThreshold: 1, successThreshold: 1 });
  return t.observe(
    healthy ? { ok: true, latencyMs: 1 } : { ok: false, latencyMs: 1, reason: 'ConnectionRefused', message: 'refused' },
    NOW,
  );
}

function tally(t: Partial<RelayTally> = {}): RelayTally {
  return {
    phase: 1,
    answered: 2,
    endpoints: 2,
    messagesToBackup: 0,
    messagesReplayed: 0,
    queuedPrimary: 0,
    queuedBackup: 0,
    replaying: false,
    backup: { up: 0, down: 0, unknown: 2 },
    ...t,
  };
}

const replaying: FailoverRecord = {
  active: false,
  replaying: true,
  lastFailover: { start: '2026-12-03T09:00:00Z', end: '2026-12-03T09:30:00Z', trigger: 'Automatic', messagesToBackup: 5 },
  phase: 1,
};

describe('planFailover', () => {
  it('starts a failover: a new phase, the start time of now to the second, counts from 0, FailoverStarted', () => {
    const plan = planFailover(seedRecord(undefined), spec, health(false), undefined, NOW);
    expect(plan.next).toEqual({
      active: true,
      replaying: false,
      lastFailover: { start: '2026-12-03T10:00:00Z', trigger: 'Automatic', messagesToBackup: 0 },
      phase: 1,
    });
    expect(plan.events).toEqual([
      {
        type: 'Warning',
        reason: 'FailoverStarted',
        message: 'Automatic failover: the primary failed its health probes: mail goes to Gmail and waits in the relay spool for the primary',
      },
    ]);
  });

  it('ends it: the end time of now, the replay counted from 0, FailoverEnded naming the copies to Gmail', () => {
    const active: FailoverRecord = {
      active: true,
      replaying: false,
      lastFailover: { start: '2026-12-03T09:00:00Z', trigger: 'Automatic', messagesToBackup: 5 },
      phase: 3,
    };
    const plan = planFailover(active, spec, health(true), tally({ phase: 3 }), NOW);
    expect(plan.next).toMatchObject({ active: false, replaying: true, phase: 4 });
    expect(plan.next.lastFailover).toEqual({ ...active.lastFailover, end: '2026-12-03T10:00:00Z', messagesReplayed: 0 });
    expect(plan.events.map((e) => e.reason)).toEqual(['FailoverEnded']);
    expect(plan.events[0]!.message).toContain('5 messages went to Gmail during it');
  });

  it('folds in only numbers gathered in the current phase, and never below what status already says', () => {
    const stale = planFailover(replaying, spec, health(true), tally({ phase: 0, messagesReplayed: 9 }), NOW);
    expect(stale.next).toBe(replaying);
    const lower = planFailover(replaying, spec, health(true), tally({ messagesToBackup: 2, queuedPrimary: 3 }), NOW);
    expect(lower.next.lastFailover).toMatchObject({ messagesToBackup: 5, messagesReplayed: 0, replayRemaining: 3 });
    expect(lower.events).toEqual([]);
  });

  it('completes the replay only when every relay answered, none replays and none holds mail for the primary', () => {
    const partial = planFailover(replaying, spec, health(true), tally({ answered: 1, messagesReplayed: 4 }), NOW);
    expect(partial.next).toMatchObject({ replaying: true, lastFailover: { messagesReplayed: 4, replayRemaining: 0 } });
    expect(planFailover(replaying, spec, health(true), tally({ replaying: true }), NOW).events).toEqual([]);
    const done = planFailover(replaying, spec, health(true), tally({ messagesReplayed: 4 }), NOW);
    expect(done.next).toMatchObject({ active: false, replaying: false, phase: 1 });
    expect(done.events).toEqual([
      {
        type: 'Normal',
        reason: 'ReplayCompleted',
        message: 'the primary has every message it missed: 4 replayed after the failover that started 2026-12-03T09:00:00Z',
      },
    ]);
  });

  it('goes on from the record a previous operator left in status', () => {
    const seeded = seedRecord({
      conditions: [{ type: 'FailoverActive', status: 'True', reason: 'PrimaryUnhealthy', message: '', lastTransitionTime: '2026-01-01T00:00:00Z' }],
      lastFailover: { start: '2026-01-01T00:00:00Z', trigger: 'Manual', messagesToBackup: 7 },
    });
    expect(seeded).toEqual({
      active: true,
      replaying: false,
      lastFailover: { start: '2026-01-01T00:00:00Z', trigger: 'Manual', messagesToBackup: 7 },
      phase: 0,
    });
    // Not probed yet after the restart: the failover goes on, without a new FailoverStarted.
    const plan = planFailover(seeded, spec, undefined, undefined, NOW);
    expect(plan).toMatchObject({ decision: { active: true }, next: seeded, events: [] });
    expect(seedRecord({ lastFailover: { end: '2026-01-01T00:00:00Z', replayRemaining: 2 } })).toMatchObject({
      active: false,
      replaying: true,
    });
  });
});

describe('backupReachableCondition', () => {
  it('is Unknown until a relay answers, and while no relay has attempted a delivery to Gmail', () => {
    expect(backupReachableCondition(undefined)).toMatchObject({ status: 'Unknown', reason: 'RelaysNotReporting' });
    const none = backupReachableCondition(tally());
    expect(none).toMatchObject({ status: 'Unknown', reason: 'NoBackupDeliveries' });
    expect(none.message).toContain("judged from the relays' own deliveries to Gmail, not a probe");
  });

  it('is False when any relay gets no answer from Gmail, True when they do', () => {
    const down = backupReachableCondition(tally({ backup: { up: 1, down: 1, unknown: 0 } }));
    expect(down).toMatchObject({ type: 'BackupReachable', status: 'False', reason: 'BackupDeliveriesFailing' });
    expect(down.message).toMatch(/^1 of 2 relays get no answer from Gmail/);
    expect(backupReachableCondition(tally({ backup: { up: 1, down: 0, unknown: 1 } }))).toMatchObject({
      status: 'True',
      reason: 'BackupAnswered',
    });
  });

  it('is False (AuditLogNotWritable) while a relay cannot write its audit log: its copies to Gmail are paused', () => {
    const paused = backupReachableCondition(tally({ backup: { up: 2, down: 0, unknown: 0 }, auditFailing: 1 }));
    expect(paused).toMatchObject({ type: 'BackupReachable', status: 'False', reason: 'AuditLogNotWritable' });
    expect(paused.message).toMatch(/^1 of 2 relays cannot write their audit log .*copies to Gmail are paused/);
    expect(backupReachableCondition(tally({ backup: { up: 2, down: 0, unknown: 0 }, auditFailing: 0 }))).toMatchObject({ status: 'True' });
  });
});
