// The primary's health hysteresis (pure) and the probe loop's reporting policy
// with an injected probe: thresholds, a flapping primary, recovery, the
// PrimaryHealthy condition and status.primary, and no report per probe.
import { describe, expect, it } from '@jest/globals';
import { MailContinuitySpec } from '../../src/api/v1alpha1/mailcontinuity.js';
import {
  HealthTracker,
  primaryHealthyCondition,
  primaryStatus,
  type HealthState,
} from '../../src/operator/health/hysteresis.js';
import { ProbeLoop } from '../../src/operator/health/loop.js';
import type { PrimarySpec, ProbeResult } from '../../src/operator/health/probe.js';
import { computeStatus } from '../../src/operator/status.js';
import { validSpec } from '../fixtures/mailcontinuity.js';
import { waitFor } from '../harness/wait.js';

const OK: ProbeResult = { ok: true, latencyMs: 12 };
const REFUSED: ProbeResult = {
  ok: false,
  latencyMs: 3,
  reason: 'ConnectionRefused',
  message: 'exchange:25 refused the connection',
  probe: 'smtp',
};
const TIMEOUT: ProbeResult = {
  ok: false,
  latencyMs: 5000,
  reason: 'Timeout',
  message: 'exchange:25 did not answer within 5000 ms (waiting for the banner)',
  probe: 'smtp',
};

const t0 = Date.parse('2026-01-01T00:00:00Z');
const at = (s: number) => new Date(t0 + s * 1000);

function feed(tracker: HealthTracker, results: ProbeResult[], startSecond = 0): HealthState[] {
  return results.map((r, i) => tracker.observe(r, at(startSecond + i * 10)));
}

describe('HealthTracker', () => {
  it('starts Unknown, with an AwaitingProbe condition and zero counters', () => {
    const tr = new HealthTracker(
      { failureThreshold: 3, successThreshold: 2 },
      { now: at(0), target: 'exchange:25 (SMTP)' },
    );
    expect(tr.current.healthy).toBeUndefined();
    const c = primaryHealthyCondition(tr.current);
    expect(c).toEqual({
      type: 'PrimaryHealthy',
      status: 'Unknown',
      reason: 'AwaitingProbe',
      message: 'the primary exchange:25 (SMTP) has not been probed yet',
    });
    expect(primaryStatus(tr.current)).toEqual({ consecutiveFailures: 0, consecutiveSuccesses: 0 });
  });

  it('one success from Unknown is Healthy (successThreshold guards only the way back)', () => {
    const tr = new HealthTracker({ failureThreshold: 3, successThreshold: 2 });
    const s = tr.observe(OK, at(0));
    expect(s.healthy).toBe(true);
    expect(s.changed).toBe(true);
    expect(primaryHealthyCondition(s).status).toBe('True');
    expect(tr.observe(OK, at(10)).changed).toBe(false);
  });

  it('becomes Unhealthy only after failureThreshold consecutive failures', () => {
    const tr = new HealthTracker({ failureThreshold: 3, successThreshold: 2 });
    const s0 = tr.observe(OK, at(0));
    const [f1, f2, f3, f4] = feed(tr, [REFUSED, REFUSED, REFUSED, REFUSED], 10);
    expect([f1!.healthy, f2!.healthy, f3!.healthy, f4!.healthy]).toEqual([true, true, false, false]);
    expect([f1!.changed, f2!.changed, f3!.changed, f4!.changed]).toEqual([false, false, true, false]);
    expect(f3!.consecutiveFailures).toBe(3);
    expect(f3!.since).toEqual(at(30));
    // While healthy, failures below the threshold leave the condition as it was.
    expect(primaryHealthyCondition(f2!)).toEqual(primaryHealthyCondition(s0));
  });

  it('from Unknown, failures below the threshold stay Unknown with the failure as reason', () => {
    const tr = new HealthTracker({ failureThreshold: 3, successThreshold: 2 });
    const [a, b, c] = feed(tr, [TIMEOUT, TIMEOUT, TIMEOUT]);
    expect(a!.healthy).toBeUndefined();
    expect(primaryHealthyCondition(a!)).toMatchObject({ status: 'Unknown', reason: 'Timeout' });
    expect(primaryHealthyCondition(a!).message).toContain('did not answer within 5000 ms');
    expect(b!.healthy).toBeUndefined();
    expect(c!.healthy).toBe(false);
    expect(primaryHealthyCondition(c!)).toMatchObject({ status: 'False', reason: 'Timeout' });
  });

  it('a primary that fails 1 probe out of 3 never becomes Unhealthy with failureThreshold 3', () => {
    const tr = new HealthTracker({ failureThreshold: 3, successThreshold: 2 });
    const pattern: ProbeResult[] = [];
    for (let i = 0; i < 300; i++) pattern.push(i % 3 === 2 ? REFUSED : OK);
    const states = feed(tr, pattern);
    expect(states.every((s) => s.healthy === true)).toBe(true);
    expect(Math.max(...states.map((s) => s.consecutiveFailures))).toBe(1);
    // Nor 2 out of 3 (failure, failure, success) with threshold 3.
    const tr2 = new HealthTracker({ failureThreshold: 3, successThreshold: 2 });
    tr2.observe(OK, at(0));
    const states2 = feed(
      tr2,
      Array.from({ length: 99 }, (_, i) => (i % 3 === 2 ? OK : REFUSED)),
      10,
    );
    expect(states2.some((s) => s.healthy !== true)).toBe(false);
    // The condition never changes while flapping below the threshold: no status write.
    expect(new Set(states.map((s) => JSON.stringify(primaryHealthyCondition(s)))).size).toBe(1);
  });

  it('recovers after successThreshold consecutive successes; a failure in between resets the count', () => {
    const tr = new HealthTracker({ failureThreshold: 2, successThreshold: 3 });
    feed(tr, [OK, REFUSED, REFUSED]);
    expect(tr.current.healthy).toBe(false);
    const [s1, s2, f, r1, r2, r3] = feed(tr, [OK, OK, REFUSED, OK, OK, OK], 100);
    expect([s1!.healthy, s2!.healthy, f!.healthy, r1!.healthy, r2!.healthy, r3!.healthy]).toEqual([
      false,
      false,
      false,
      false,
      false,
      true,
    ]);
    expect(r3!.changed).toBe(true);
    expect(r3!.consecutiveSuccesses).toBe(3);
    // While recovering, the condition still explains the last failure, unchanged.
    expect(primaryHealthyCondition(s2!)).toEqual(primaryHealthyCondition(f!));
    expect(primaryHealthyCondition(r3!)).toMatchObject({ status: 'True', reason: 'ProbeSucceeded' });
    expect(r3!.lastFailure).toBeUndefined();
  });

  it('the False condition names the failure and the threshold, with no counters or latency that change per probe', () => {
    const tr = new HealthTracker(
      { failureThreshold: 3, successThreshold: 2 },
      { target: 'exchange:25 (SMTP with STARTTLS TLS)' },
    );
    const states = feed(tr, [REFUSED, REFUSED, REFUSED, REFUSED, REFUSED]);
    const c = primaryHealthyCondition(states[2]!);
    expect(c).toEqual({
      type: 'PrimaryHealthy',
      status: 'False',
      reason: 'ConnectionRefused',
      message:
        'the primary exchange:25 (SMTP with STARTTLS TLS) failed 3 health probes in a row: exchange:25 refused the connection',
    });
    expect(primaryHealthyCondition(states[4]!)).toEqual(c);
    // The reason follows a change of failure mode.
    expect(primaryHealthyCondition(tr.observe(TIMEOUT, at(100)))).toMatchObject({ status: 'False', reason: 'Timeout' });
  });

  it('primaryStatus gives status.primary with RFC 3339 time and whole milliseconds', () => {
    const tr = new HealthTracker({ failureThreshold: 3, successThreshold: 2 });
    tr.observe(OK, new Date('2026-01-01T00:00:00.456Z'));
    const s = tr.observe({ ok: true, latencyMs: 12.6 }, new Date('2026-01-01T00:00:10.789Z'));
    expect(primaryStatus(s)).toEqual({
      lastProbeTime: '2026-01-01T00:00:10Z',
      latencyMilliseconds: 13,
      consecutiveFailures: 0,
      consecutiveSuccesses: 2,
    });
  });

  it('the condition fits status.ts extraConditions and keeps its transition time while unchanged', () => {
    const spec = MailContinuitySpec.parse(validSpec());
    const mc = {
      apiVersion: 'mailcontinuity.io/v1alpha1' as const,
      kind: 'MailContinuity' as const,
      metadata: { name: 'mc', namespace: 'ns', generation: 1 },
      spec,
    };
    const tr = new HealthTracker({ failureThreshold: 1, successThreshold: 1 });
    const s1 = computeStatus({
      mc,
      secretProblems: [],
      extraConditions: [primaryHealthyCondition(tr.observe(REFUSED, at(0)))],
      now: at(0),
    });
    const c1 = s1.conditions!.find((c) => c.type === 'PrimaryHealthy')!;
    expect(c1).toMatchObject({
      status: 'False',
      reason: 'ConnectionRefused',
      lastTransitionTime: '2026-01-01T00:00:00Z',
    });
    const s2 = computeStatus({
      mc: { ...mc, status: s1 },
      secretProblems: [],
      extraConditions: [primaryHealthyCondition(tr.observe(REFUSED, at(10)))],
      now: at(10),
    });
    expect(s2.conditions!.find((c) => c.type === 'PrimaryHealthy')).toEqual(c1);
  });

  it('rejects thresholds below 1', () => {
    expect(() => new HealthTracker({ failureThreshold: 0, successThreshold: 1 })).toThrow(/failureThreshold/);
  });
});

function primarySpec(overrides: Partial<PrimarySpec['health']> = {}, host = 'exchange.corp.example.com'): PrimarySpec {
  return {
    host,
    port: 25,
    tls: 'None',
    insecureSkipTLSVerify: false,
    health: {
      smtp: { enabled: true },
      periodSeconds: 1,
      timeoutSeconds: 1,
      failureThreshold: 2,
      successThreshold: 2,
      ...overrides,
    },
  };
}

describe('ProbeLoop reporting (injected probe)', () => {
  it('reports on the first probe and on condition changes, not on every probe, and never overlaps probes', async () => {
    let next: ProbeResult = OK;
    let running = 0;
    let maxRunning = 0;
    let probes = 0;
    const reports: HealthState[] = [];
    const loop = new ProbeLoop({
      onChange: (_k, s) => reports.push(s),
      probe: async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await new Promise((r) => setTimeout(r, 5));
        running--;
        probes++;
        return next;
      },
      statusIntervalMs: 60_000,
    });
    // periodSeconds is an integer in the API; 1 s periods keep this test short enough.
    loop.ensure('ns/a', primarySpec({ periodSeconds: 1 }));
    try {
      await waitFor('first report', () => reports.length === 1, 5_000, 10);
      expect(primaryHealthyCondition(reports[0]!).status).toBe('True');
      await waitFor('3 probes', () => probes >= 3, 10_000, 10);
      expect(reports.length).toBe(1);
      next = REFUSED;
      await waitFor('False reported', () => reports.some((r) => r.healthy === false), 10_000, 10);
      expect(reports.map((r) => primaryHealthyCondition(r).status)).toEqual(['True', 'False']);
      expect(reports[1]!.consecutiveFailures).toBe(2);
      expect(loop.reported('ns/a')).toBe(reports[1]);
      expect(maxRunning).toBe(1);
    } finally {
      await loop.stopAll();
    }
    const after = probes;
    await new Promise((r) => setTimeout(r, 1_200));
    expect(probes).toBe(after);
  }, 30_000);

  it('refreshes status at most every statusIntervalMs while the condition is stable', async () => {
    let probes = 0;
    const reports: number[] = [];
    const loop = new ProbeLoop({
      onChange: () => reports.push(probes),
      probe: async () => {
        probes++;
        return OK;
      },
      statusIntervalMs: 2_500,
      jitter: 0,
    });
    loop.ensure('ns/b', primarySpec({ periodSeconds: 1 }));
    try {
      await waitFor('6 probes', () => probes >= 6, 15_000, 20);
    } finally {
      await loop.stopAll();
    }
    // First report at probe 1, then one refresh about every 2.5 s (every 3rd probe), not 6 reports.
    expect(reports[0]).toBe(1);
    expect(reports.length).toBeGreaterThanOrEqual(2);
    expect(reports.length).toBeLessThanOrEqual(3);
  }, 30_000);

  it('a spec change restarts the loop: thresholds keep the verdict, a new host starts Unknown', async () => {
    const seen: string[] = [];
    const reports: HealthState[] = [];
    const loop = new ProbeLoop({
      onChange: (_k, s) => reports.push(s),
      probe: async (p) => {
        seen.push(p.host);
        return REFUSED;
      },
    });
    loop.ensure('ns/c', primarySpec({ failureThreshold: 1 }));
    try {
      await waitFor('unhealthy', () => loop.current('ns/c')?.healthy === false, 5_000, 10);
      loop.ensure('ns/c', primarySpec({ failureThreshold: 1 })); // same spec: no restart
      loop.ensure('ns/c', primarySpec({ failureThreshold: 5 }));
      expect(loop.current('ns/c')?.healthy).toBe(false);
      expect(loop.current('ns/c')?.failureThreshold).toBe(5);
      loop.ensure('ns/c', primarySpec({ failureThreshold: 5 }, 'dr-exchange.corp.example.com'));
      expect(loop.current('ns/c')?.healthy).toBeUndefined();
      await waitFor('a probe of the new host', () => seen.includes('dr-exchange.corp.example.com'), 5_000, 10);
      await waitFor(
        'report for the new host',
        () => reports.some((r) => r.target?.startsWith('dr-exchange')),
        5_000,
        10,
      );
      expect(loop.keys()).toEqual(['ns/c']);
      await loop.remove('ns/c');
      expect(loop.keys()).toEqual([]);
      expect(loop.current('ns/c')).toBeUndefined();
    } finally {
      await loop.stopAll();
    }
  }, 30_000);
});
