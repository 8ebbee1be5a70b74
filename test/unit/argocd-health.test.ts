// The Argo CD health check (deploy/argocd/health.lua) run against
// MailContinuity objects in every state, by two interpreters on the same
// samples: the reference Lua 5.1 (Debian's lua5.1) and gopher-lua, the Go Lua
// VM Argo CD embeds, opened as Argo CD opens it for a health check from
// argocd-cm (package, base, table and a safe os; no string or math library:
// test/harness/cmd/argocd-lua, built and cached by
// test/harness/build-argocd-lua.sh). The statuses come from the operator's own
// computeStatus(), so the Lua reads the conditions the operator really writes.
import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { API_VERSION, MailContinuitySpec, type MailContinuity } from '../../src/api/v1alpha1/mailcontinuity.js';
import { computeStatus } from '../../src/operator/status.js';
import { validSpec } from '../fixtures/mailcontinuity.js';

const LUA_FILE = 'deploy/argocd/health.lua';
const HEALTH_KEY = 'resource.customizations.health.mailcontinuity.io_MailContinuity';
const now = new Date('2025-01-01T00:00:00Z');

/** A JSON value as a Lua table constructor (null members are left out, as gopher-lua's JSON decoding does). */
function toLua(value: unknown): string {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'string') return JSON.stringify(value); // JSON's escapes are valid Lua 5.1 escapes for ASCII
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `{${value.map(toLua).join(', ')}}`;
  const fields = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `[${JSON.stringify(k)}] = ${toLua(v)}`);
  return `{${fields.join(', ')}}`;
}

type Health = { status: string; message: string };
type Evaluator = (objects: unknown[], luaSource?: string) => Health[];

/** Runs health.lua once per object with the real Lua 5.1 interpreter; returns hs.status and hs.message of each. */
function lua51(objects: unknown[], luaSource = readFileSync(LUA_FILE, 'utf8')): Health[] {
  const dir = mkdtempSync(join(tmpdir(), 'mc-argocd-'));
  try {
    writeFileSync(join(dir, 'health.lua'), luaSource);
    const driver = [
      `local check = assert(loadfile(${JSON.stringify(join(dir, 'health.lua'))}))`,
      ...objects.map(
        (o) =>
          `obj = ${toLua(o)}\nlocal hs = check()\nio.write(tostring(hs.status), "\\t", tostring(hs.message), "\\n")`,
      ),
    ].join('\n');
    writeFileSync(join(dir, 'driver.lua'), driver);
    const res = spawnSync('lua5.1', [join(dir, 'driver.lua')], { encoding: 'utf8' });
    if (res.error) throw new Error(`lua5.1 not runnable (make install installs Debian's lua5.1): ${res.error.message}`);
    if (res.status !== 0) throw new Error(`lua5.1 failed: ${res.stderr}`);
    return res.stdout
      .trimEnd()
      .split('\n')
      .map((line) => {
        const [status, ...rest] = line.split('\t');
        return { status: status!, message: rest.join('\t') };
      });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let argocdLuaBinary: string | undefined;
/** Runs health.lua once per object in gopher-lua as Argo CD runs it (the object passed as JSON, as Argo CD decodes it). */
function gopherLua(objects: unknown[], luaSource = readFileSync(LUA_FILE, 'utf8')): Health[] {
  if (!argocdLuaBinary) {
    const build = spawnSync('test/harness/build-argocd-lua.sh', { encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`test/harness/build-argocd-lua.sh failed (needs Go): ${build.stderr}`);
    argocdLuaBinary = build.stdout.trim();
  }
  const res = spawnSync(argocdLuaBinary, {
    input: JSON.stringify({ script: luaSource, objects }),
    encoding: 'utf8',
  });
  if (res.status !== 0) throw new Error(`argocd-lua failed: ${res.stderr}`);
  return res.stdout
    .trimEnd()
    .split('\n')
    .map((line) => {
      const out = JSON.parse(line) as Partial<Health> & { error?: string };
      if (out.error) throw new Error(`gopher-lua: ${out.error}`);
      return { status: out.status ?? '', message: out.message ?? '' };
    });
}

function mc(generation = 1, manual: 'Auto' | 'Active' = 'Auto'): MailContinuity {
  const spec = MailContinuitySpec.parse(validSpec());
  spec.failover.manual = manual;
  return {
    apiVersion: API_VERSION,
    kind: 'MailContinuity',
    metadata: { name: 'corp', namespace: 'mail', generation, uid: 'u-1' },
    spec,
  } as MailContinuity;
}

type Inputs = Parameters<typeof computeStatus>[0];
/** The object as the operator leaves it after a reconcile with these inputs. */
function reconciled(object: MailContinuity, inputs: Partial<Inputs>): MailContinuity {
  const status = computeStatus({ mc: object, secretProblems: [], now, ...inputs });
  return { ...object, status };
}

const readySts = { replicas: 2, readyReplicas: 2, updatedReplicas: 2, observedGeneration: 1, generation: 1 };
const failover = {
  type: 'FailoverActive',
  status: 'True' as const,
  reason: 'PrimaryUnhealthy',
  message: 'Exchange failed 3 probes in a row',
};

describe.each<[string, Evaluator]>([
  ['Lua 5.1', lua51],
  ['gopher-lua with the libraries Argo CD opens', gopherLua],
])('Argo CD health check for MailContinuity (%s)', (_name, health) => {
  it('is Progressing before the operator wrote any status', () => {
    const [hs] = health([mc()]);
    expect(hs).toEqual({ status: 'Progressing', message: 'Waiting for the operator to report status' });
  });

  it('is Progressing while the relay rolls out (Reconciling=True)', () => {
    const [hs] = health([reconciled(mc(), { statefulSet: { ...readySts, readyReplicas: 1 } })]);
    expect(hs!.status).toBe('Progressing');
    expect(hs!.message).toBe('RelayNotReady: waiting for the relay: 1/2 replicas ready');
  });

  it('is Healthy when Ready=True', () => {
    const [hs] = health([reconciled(mc(), { statefulSet: readySts })]);
    expect(hs).toEqual({ status: 'Healthy', message: 'Succeeded: relay ready: 2/2 replicas' });
  });

  it('is Progressing when the status speaks of an older generation, even if it said Ready', () => {
    const ready = reconciled(mc(), { statefulSet: readySts });
    const edited = { ...ready, metadata: { ...ready.metadata, generation: 2 } };
    const [hs] = health([edited]);
    expect(hs).toEqual({ status: 'Progressing', message: 'Waiting for the operator to observe generation 2' });
  });

  it('is Degraded when Stalled=True, with the message that says what to fix', () => {
    const [hs] = health([
      reconciled(mc(), { secretProblems: [{ field: 'spec.backup.gmail.serviceAccountSecretRef', name: 'gmail-sa' }] }),
    ]);
    expect(hs!.status).toBe('Degraded');
    expect(hs!.message).toBe(
      'SecretNotFound: Secret mail/gmail-sa (spec.backup.gmail.serviceAccountSecretRef) not found: create it in namespace mail',
    );
  });

  it('is Degraded while failover is active: mail flows to Gmail while Exchange is down', () => {
    const [hs] = health([reconciled(mc(), { statefulSet: readySts, extraConditions: [failover] })]);
    expect(hs!.status).toBe('Degraded');
    expect(hs!.message).toContain('Failover active (Exchange is down): inbound mail is flowing to Gmail');
    expect(hs!.message).toContain('PrimaryUnhealthy: Exchange failed 3 probes in a row');
  });

  it('says when the failover was forced by spec.failover.manual', () => {
    const [hs] = health([reconciled(mc(1, 'Active'), { statefulSet: readySts, extraConditions: [failover] })]);
    expect(hs!.status).toBe('Degraded');
    expect(hs!.message).toContain('failover forced by spec.failover.manual: Active');
  });

  it('is Healthy again once FailoverActive turns False', () => {
    const ended = { ...failover, status: 'False' as const, reason: 'PrimaryHealthy', message: 'Exchange is back' };
    const [hs] = health([reconciled(mc(), { statefulSet: readySts, extraConditions: [ended] })]);
    expect(hs!.status).toBe('Healthy');
  });

  it('is Progressing (not Healthy) with conditions but no Ready', () => {
    const [hs] = health([{ ...mc(), status: { observedGeneration: 1, conditions: [] } }]);
    expect(hs).toEqual({ status: 'Progressing', message: 'Waiting for Ready' });
  });

  it('fails the test when the check is broken (the driver sees what Lua returns)', () => {
    const broken = readFileSync(LUA_FILE, 'utf8').replace('hs.status = "Healthy"', 'hs.status = "Degraded"');
    const [hs] = health([reconciled(mc(), { statefulSet: readySts })], broken);
    expect(hs!.status).toBe('Degraded');
  });
});

describe('gopher-lua as Argo CD opens it', () => {
  it('has no string or math library (a check that used string.format would fail in Argo CD, not in lua5.1)', () => {
    const script = 'local hs = {}\nhs.status = "Healthy"\nhs.message = string.format("%d", 1)\nreturn hs';
    expect(lua51([mc()], script)).toEqual([{ status: 'Healthy', message: '1' }]);
    expect(() => gopherLua([mc()], script)).toThrow(/non-table object\(nil\) with key 'format'/);
    expect(() => gopherLua([mc()], 'return { status = "Healthy", message = tostring(math.floor(1.5)) }')).toThrow(
      /non-table object\(nil\) with key 'floor'/,
    );
  });

  it('maps a status Argo CD does not know to Unknown, as Argo CD does', () => {
    expect(gopherLua([mc()], 'return { status = "Fine", message = "x" }')).toEqual([
      { status: 'Unknown', message: 'Lua returned an invalid health status' },
    ]);
  });
});

describe('Argo CD files', () => {
  it('is embedded unchanged in deploy/argocd/argocd-cm.yaml', () => {
    const cm = YAML.parse(readFileSync('deploy/argocd/argocd-cm.yaml', 'utf8'));
    expect(cm.kind).toBe('ConfigMap');
    expect(cm.metadata.name).toBe('argocd-cm');
    expect(cm.data[HEALTH_KEY]).toBe(readFileSync(LUA_FILE, 'utf8'));
  });

  it('the example Application syncs the chart with server-side apply', () => {
    const app = YAML.parse(readFileSync('deploy/argocd/application.yaml', 'utf8'));
    expect(app.kind).toBe('Application');
    expect(app.spec.source.path).toBe('charts/mail-continuity-operator');
    expect(app.spec.syncPolicy.syncOptions).toContain('ServerSideApply=true');
  });
});
