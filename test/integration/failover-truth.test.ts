// The failover's story on a real control plane: conditions and Events that
// agree with each other and with what exists. A MailContinuity stalled before
// its first relay (Secret missing) never says it fails over, whatever the
// probes or spec.failover.manual say; once its relay StatefulSet exists it does.
// A maintenance window a few seconds long starts and ends by itself: status
// shows it as next, then in progress, Events at its start and end, and the
// apiserver's CEL rules refuse windows that end before they start or last too long.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import type { MailContinuity } from '../../src/api/v1alpha1/mailcontinuity.js';
import { Controller } from '../../src/operator/controller.js';
import type { ProbeResult } from '../../src/operator/health/probe.js';
import { KubeClient, type KubeObject } from '../../src/operator/kube/client.js';
import { EVENTS, MAILCONTINUITIES, SECRETS, STATEFULSETS } from '../../src/operator/kube/resources.js';
import { operatorMetrics } from '../../src/operator/metrics.js';
import { startControlPlane, type ControlPlane } from '../harness/controlplane.js';
import { waitFor } from '../harness/wait.js';
import { createMailContinuity } from '../fixtures/mailcontinuity.js';

let cp: ControlPlane;
let client: KubeClient;
let controller: Controller;
const NS = 'default';
const log = pino({ level: process.env.MC_TEST_LOG ?? 'silent' });
/** The primary as the probes see it (a probe function instead of a network target). */
let primaryUp = false;

type MC = MailContinuity & KubeObject;
const getMc = (name: string) => client.get<MC>(MAILCONTINUITIES, NS, name);
const condition = (mc: MC, type: string) => mc.status?.conditions?.find((c) => c.type === type);
async function events(name: string): Promise<{ reason: string; type: string; message: string }[]> {
  const list = await client.list<KubeObject & { reason: string; type: string; message: string }>(EVENTS, NS);
  return list.items.filter((e) => (e.involvedObject as { name?: string }).name === name);
}

beforeAll(async () => {
  cp = await startControlPlane();
  cp.kubectl(['apply', '--server-side', '-f', 'crds/']);
  const metrics = operatorMetrics();
  client = KubeClient.fromFile(cp.kubeconfig);
  controller = new Controller({
    client,
    log,
    metrics,
    fieldManager: 'mail-continuity-operator',
    defaultImage: 'example/mail-continuity:test',
    workers: 2,
    watchTimeoutSeconds: 30,
    probe: async (): Promise<ProbeResult> =>
      primaryUp ? { ok: true, latencyMs: 1 } : { ok: false, latencyMs: 1, reason: 'ConnectionRefused', message: 'connect ECONNREFUSED' },
  });
  await waitFor('CRD served', async () => (await client.list(MAILCONTINUITIES, NS)).items !== undefined, 30_000);
  await controller.start();
}, 120_000);

afterAll(async () => {
  await controller?.stop();
  await cp?.stop();
});

const fastProbes = (s: { primary: { health?: Record<string, unknown> } }) => {
  s.primary.health = { ...s.primary.health, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 1 };
};

describe('a status that tells the truth', () => {
  it('a MailContinuity stalled before its first relay never fails over, then does once its relay exists', async () => {
    primaryUp = false;
    await createMailContinuity(client, NS, 'stalled', (s) => {
      fastProbes(s);
      s.backup.gmail.serviceAccountSecretRef = { name: 'stalled-gmail' };
    });
    const mc = await waitFor('Stalled and probed', async () => {
      const m = await getMc('stalled');
      return condition(m, 'Stalled')?.status === 'True' && condition(m, 'PrimaryHealthy')?.status === 'False' ? m : undefined;
    });
    expect(condition(mc, 'Stalled')).toMatchObject({ reason: 'SecretNotFound' });
    expect(condition(mc, 'FailoverActive')).toMatchObject({ status: 'False', reason: 'NoRelayDeployed' });
    expect(mc.status?.lastFailover).toBeUndefined();
    // Manual Active does not make a failover out of nothing either.
    await client.mergePatch(MAILCONTINUITIES, NS, 'stalled', { spec: { failover: { manual: 'Active' } } });
    await waitFor('the new generation observed', async () => {
      const m = await getMc('stalled');
      return condition(m, 'FailoverActive')?.observedGeneration === m.metadata.generation;
    });
    expect(condition(await getMc('stalled'), 'FailoverActive')).toMatchObject({ status: 'False', reason: 'NoRelayDeployed' });
    expect((await events('stalled')).map((e) => e.reason)).toEqual(['SecretNotFound']);

    // The Secret appears: the relay is applied, and only then does the failover start.
    await client.create(SECRETS, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'stalled-gmail', namespace: NS },
      data: { 'credentials.json': Buffer.from('{"type":"service_account"}').toString('base64') },
    });
    await waitFor('the relay StatefulSet', () => client.get(STATEFULSETS, NS, 'stalled-relay').catch(() => undefined));
    const active = await waitFor('FailoverActive=True', async () => {
      const m = await getMc('stalled');
      return condition(m, 'FailoverActive')?.status === 'True' ? m : undefined;
    });
    expect(condition(active, 'FailoverActive')).toMatchObject({ reason: 'ManualFailover' });
    expect(active.status?.lastFailover).toMatchObject({ trigger: 'Manual' });
    await waitFor('FailoverStarted', async () => (await events('stalled')).some((e) => e.reason === 'FailoverStarted'));
  }, 60_000);

  it('a maintenance window a few seconds long starts and ends by itself, shown in status and Events', async () => {
    primaryUp = true;
    // Whole seconds, as the window is written.
    const start = new Date(Math.ceil((Date.now() + 6000) / 1000) * 1000);
    const end = new Date(start.getTime() + 4000);
    const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');
    // RFC 3339 with an offset: the window's times are instants, whatever the zone they are written in.
    const plusOne = (d: Date) => iso(new Date(d.getTime() + 3_600_000)).replace('Z', '+01:00');
    await client.create(SECRETS, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'gmail-sa', namespace: NS },
      data: { 'credentials.json': Buffer.from('{"type":"service_account"}').toString('base64') },
    });
    await createMailContinuity(client, NS, 'patch-night', (s) => {
      fastProbes(s);
      s.failover = { ...s.failover, schedule: [{ start: plusOne(start), end: iso(end), description: 'Exchange CU14' }] };
    });
    const before = await waitFor('status.schedule.nextWindow', async () => {
      const m = await getMc('patch-night');
      return m.status?.schedule?.nextWindow && condition(m, 'PrimaryHealthy')?.status === 'True' ? m : undefined;
    });
    expect(before.status?.schedule).toEqual({
      nextWindow: { start: iso(start), end: iso(end), description: 'Exchange CU14' },
    });
    expect(condition(before, 'FailoverActive')).toMatchObject({ status: 'False', reason: 'PrimaryHealthy' });

    const during = await waitFor('FailoverActive=True in the window', async () => {
      const m = await getMc('patch-night');
      return condition(m, 'FailoverActive')?.status === 'True' ? m : undefined;
    }, 15_000, 100);
    expect(Date.now()).toBeGreaterThanOrEqual(start.getTime());
    expect(condition(during, 'FailoverActive')).toMatchObject({ reason: 'MaintenanceWindow' });
    expect(during.status?.schedule?.activeWindow).toMatchObject({ end: iso(end) });
    expect(during.status?.lastFailover).toMatchObject({ trigger: 'Scheduled' });

    const after = await waitFor('the window over', async () => {
      const m = await getMc('patch-night');
      return condition(m, 'FailoverActive')?.status === 'False' ? m : undefined;
    }, 15_000, 100);
    expect(Date.now()).toBeGreaterThanOrEqual(end.getTime());
    expect(condition(after, 'FailoverActive')).toMatchObject({ reason: 'PrimaryHealthy' });
    expect(after.status?.schedule).toBeUndefined();
    expect(after.status?.lastFailover).toMatchObject({ trigger: 'Scheduled', end: expect.any(String) });
    const evs = await waitFor('FailoverEnded', async () => {
      const e = await events('patch-night');
      return e.some((x) => x.reason === 'FailoverEnded') ? e : undefined;
    });
    expect(evs.find((e) => e.reason === 'FailoverStarted')?.message).toContain('Scheduled failover: maintenance window');
    expect(evs.find((e) => e.reason === 'FailoverEnded')?.message).toMatch(/^the maintenance window is over: failover ended/);
  }, 60_000);

  it('the apiserver refuses a window that ends before it starts or lasts longer than 168h, naming the field', async () => {
    const attempt = (schedule: unknown) =>
      createMailContinuity(client, NS, 'bad-window', (s) => {
        s.failover = { ...s.failover, schedule: schedule as never };
      }).then(
        () => '',
        (err: Error) => err.message,
      );
    expect(await attempt([{ start: '2026-12-05T22:00:00Z', end: '2026-12-05T21:00:00Z' }])).toContain(
      'spec.failover.schedule[0].end: Invalid value: "object": end must be after start',
    );
    expect(await attempt([{ start: '2026-12-01T00:00:00Z', end: '2026-12-08T00:00:01Z' }])).toContain(
      'a maintenance window lasts at most 168h',
    );
    expect(await attempt([{ start: 'tomorrow', end: '2026-12-08T00:00:01Z' }])).toContain('spec.failover.schedule[0].start');
  }, 30_000);
});
