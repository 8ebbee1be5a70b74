// Operator scale benchmark (not a test): N MailContinuity resources created at
// once on the harness apiserver. Measures the time until every one has
// observedGeneration == generation and all of its children exist, the API
// requests per resource, the operator's peak RSS, and the API writes during an
// idle period afterwards (should be ~0: no status write loops, no re-applies).
// The operator probes every primary: they all point at one local smtp-sink
// (Postfix's test server), so "settled" also means PrimaryHealthy=True and the
// idle period includes 500 probe loops (one SMTP probe per resource every 10 s).
//
// The operator runs as built (`make build`, then node dist/src/cli.js operator): --operator names
// another build's cli.js (e.g. an older commit's, to run before and after in one session).
//
//   node --import tsx bench/operator-scale.ts [--count 500] [--idle 600s] [--operator dist/src/cli.js]
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseDuration } from '../src/api/v1alpha1/formats.js';
import { API_VERSION } from '../src/api/v1alpha1/mailcontinuity.js';
import { pino } from 'pino';
import { KubeClient, type KubeObject } from '../src/operator/kube/client.js';
import { Informer } from '../src/operator/kube/informer.js';
import { CHILD_TYPES, MAILCONTINUITIES, SECRETS } from '../src/operator/kube/resources.js';
import { freePort, startControlPlane } from '../test/harness/controlplane.js';
import { startSmtpSink } from '../test/harness/smtp-tools.js';
import { validSpec } from '../test/fixtures/mailcontinuity.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '500' },
    idle: { type: 'string', default: '600s' },
    operator: { type: 'string', default: 'dist/src/cli.js' },
    // The operator container's environment in the chart (templates/deployment.yaml); =none: without.
    'pod-env': { type: 'string', default: 'NODE_OPTIONS=--max-old-space-size=128 --max-semi-space-size=2,MALLOC_ARENA_MAX=2,MALLOC_TRIM_THRESHOLD_=131072' },
  },
});
const podEnv = Object.fromEntries(
  values['pod-env'] === 'none' ? [] : values['pod-env']!.split(',').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);
if (!existsSync(values.operator!)) {
  console.error(`--operator: ${values.operator} does not exist (run make build first)`);
  process.exit(2);
}
const count = Number(values.count);
const idleMs = parseDuration(values.idle!);
const log = (s: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function metrics(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = line.match(
      /^(mail_continuity_operator_api_requests_total\{[^}]*\}|mail_continuity_operator_reconcile_total\{[^}]*\}|mail_continuity_operator_process_cpu_seconds_total)\s+(\S+)/,
    );
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}
const sum = (m: Map<string, number>, re: RegExp) => [...m].filter(([k]) => re.test(k)).reduce((a, [, v]) => a + v, 0);
const rssMb = (pid: number, field: 'VmRSS' | 'VmHWM') =>
  Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`${field}:\\s+(\\d+)`))![1]) / 1024;

async function main() {
  const cp = await startControlPlane();
  const sink = await startSmtpSink({ backlog: 1024 });
  let op: ReturnType<typeof spawn> | undefined;
  try {
    cp.kubectl(['apply', '--server-side', '-f', 'crds/']);
    const client = KubeClient.fromFile(cp.kubeconfig);
    await client.create(SECRETS, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'gmail-sa', namespace: 'default' },
      data: { 'credentials.json': Buffer.from('{}').toString('base64') },
    });
    // The benchmark watches (it does not poll lists): a list of 500 StatefulSets every 250 ms would
    // cost the apiserver more than the operator's own work. Children: names only.
    const silent = pino({ level: 'silent' });
    type Mc = KubeObject & { status?: { observedGeneration?: number; conditions?: { type: string; status: string }[] } };
    const mcs = new Informer<Mc>(client, MAILCONTINUITIES, { namespace: 'default', log: silent });
    const children = Object.values(CHILD_TYPES).map(
      (t) =>
        new Informer<KubeObject>(client, t, {
          namespace: 'default',
          labelSelector: 'app.kubernetes.io/managed-by=mail-continuity-operator',
          metadataOnly: true,
          log: silent,
        }),
    );
    for (const i of [mcs, ...children]) i.start();
    await Promise.all([mcs, ...children].map((i) => i.synced));
    const port = await freePort();
    op = spawn(
      process.execPath,
      [
        values.operator!,
        'operator',
        `--kubeconfig=${cp.kubeconfig}`,
        '--leader-elect=false',
        `--metrics-bind-address=127.0.0.1:${port}`,
        '--log-level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...podEnv } },
    );
    for (;;) {
      try {
        await metrics(port);
        break;
      } catch {
        await sleep(200);
      }
    }
    await sleep(1000);
    const m0 = await metrics(port);
    log(`operator ${values.operator}, environment ${JSON.stringify(podEnv)}`);
    log(`creating ${count} MailContinuity resources at once`);
    const t0 = Date.now();
    const names = Array.from({ length: count }, (_, i) => `mc-${String(i).padStart(4, '0')}`);
    for (let i = 0; i < names.length; i += 50) {
      await Promise.all(
        names.slice(i, i + 50).map((name) =>
          client.create(MAILCONTINUITIES, {
            apiVersion: API_VERSION,
            kind: 'MailContinuity',
            metadata: { name, namespace: 'default' },
            spec: { ...validSpec(), primary: { host: '127.0.0.1', port: sink.port, tls: 'None' } },
          } as KubeObject),
        ),
      );
    }
    const created = Date.now() - t0;
    log(`created in ${created} ms; waiting for every one to be reconciled`);
    let settled = 0;
    for (;;) {
      const observed = mcs.list().filter(
        (m) =>
          m.status?.observedGeneration === m.metadata.generation &&
          m.status?.conditions?.some((c) => c.type === 'PrimaryHealthy' && c.status === 'True'),
      ).length;
      const counts = children.map((i) => i.size);
      const complete = Math.min(observed, ...counts);
      if (complete >= count) {
        settled = Date.now() - t0;
        break;
      }
      if (Date.now() - t0 > 600_000)
        throw new Error(`not settled after 10 minutes: ${observed} observed, children ${counts}`);
      await sleep(100);
    }
    const m1 = await metrics(port);
    const requests = sum(m1, /api_requests/) - sum(m0, /api_requests/);
    const writes = sum(m1, /verb="(patch|post|put|delete)"/) - sum(m0, /verb="(patch|post|put|delete)"/);
    const cpu = sum(m1, /process_cpu/) - sum(m0, /process_cpu/);
    log(`all ${count} reconciled with children in ${settled} ms (operator CPU ${cpu.toFixed(1)} s)`);
    log(
      `API requests by the operator: ${requests} (${(requests / count).toFixed(1)} per resource, ${(writes / count).toFixed(1)} writes per resource)`,
    );
    log(`operator RSS now ${rssMb(op!.pid!, 'VmRSS').toFixed(0)} MB, peak ${rssMb(op!.pid!, 'VmHWM').toFixed(0)} MB`);
    log(`idle for ${idleMs / 1000} s`);
    await sleep(idleMs);
    const m2 = await metrics(port);
    const idleWrites = sum(m2, /verb="(patch|post|put|delete)"/) - sum(m1, /verb="(patch|post|put|delete)"/);
    const idleRequests = sum(m2, /api_requests/) - sum(m1, /api_requests/);
    log(`idle: ${idleWrites} API writes, ${idleRequests} requests in all (relists and watch renewals)`);
    log(
      `operator RSS after idle ${rssMb(op!.pid!, 'VmRSS').toFixed(0)} MB, peak ${rssMb(op!.pid!, 'VmHWM').toFixed(0)} MB`,
    );
    console.log(
      JSON.stringify({
        count,
        createdMs: created,
        settledMs: settled,
        operatorCpuSeconds: Number(cpu.toFixed(1)),
        requestsPerResource: requests / count,
        writesPerResource: writes / count,
        idleSeconds: idleMs / 1000,
        idleWrites,
        idleRequests,
        peakRssMb: Math.round(rssMb(op!.pid!, 'VmHWM')),
      }),
    );
    op.kill('SIGTERM');
    await Promise.all([mcs, ...children].map((i) => i.stop()));
  } finally {
    op?.kill('SIGTERM');
    await sink.stop();
    await cp.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
