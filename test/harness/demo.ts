// `make demo`: the whole product through an Exchange outage and back, in a
// real one-node Kubernetes cluster built on this machine (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kubelet + containerd, kube-proxy):
// the image built from the Dockerfile, the chart installed with helm,
// examples/demo.yaml applied with kubectl, the relay StatefulSet's pods on
// their PVCs, mail sent to the relay Service. Postfix stands in for Exchange
// and a strict emulator for Gmail (the one part that cannot run here).
//
// `make demo DEMO_ARGS=--local` runs the same timeline without a node: the
// relay as a local process from the config the operator rendered.
// Ctrl-C at any point stops everything it started.
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { installProduct, OPERATOR_NAMESPACE, RELEASE } from './cluster/product.js';
import { DEMO_USER, formatTable, runTimeline, type DemoTarget } from './demo-timeline.js';
import { startStack } from './stack.js';

const t0 = Date.now();
const stamp = () => `[demo +${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`;
const say = (text: string) => console.log(`\n${stamp()} ${text}`);
const show = (text: string) => console.log(text);
const local = process.argv.includes('--local');

async function main() {
  let stop: (() => Promise<void>) | undefined;
  process.once('SIGINT', () => {
    console.log('\n[demo] interrupted: stopping everything it started');
    void (stop?.() ?? Promise.resolve()).then(() => process.exit(130));
  });
  const manifest = YAML.parse(readFileSync('examples/demo.yaml', 'utf8')) as {
    metadata: { name: string };
    spec: Record<string, unknown>;
  };
  say('examples/demo.yaml: FailoverOnly, one exclusion rule (Sensitivity: Company-Confidential)');
  show(
    local
      ? '  --local: no node; the relay runs as a local process from the config the operator rendered.'
      : '  In a one-node cluster built here. Postfix on the node stands in for Exchange, an emulator for Gmail.',
  );
  const common = {
    name: manifest.metadata.name,
    namespace: 'mail',
    spec: manifest.spec,
    domains: ['corp.example.com'],
    gmailUsers: [DEMO_USER],
    progress: say,
    detail: show,
    registerStop: (s: () => Promise<void>) => (stop = s),
  };
  try {
    let target: DemoTarget;
    if (local) {
      target = await startStack({ ...common, relays: 1 });
    } else {
      const p = await installProduct(common);
      target = {
        ...p,
        workloads: () => p.kubectl(['-n', 'mail', 'get', 'pods,pvc,svc', '-o', 'wide']),
      };
      show(p.kubectl(['-n', 'mail-continuity-system', 'get', 'pods']).trimEnd());
    }
    const table = await runTimeline(target, say, show, t0);
    say('final table');
    console.log(formatTable(table));
    const ok = table.lost === 0 && table.duplicated === 0 && table.atExchange === table.sent;
    console.log(
      ok
        ? '\n  Every message reached Exchange exactly once; Gmail got the outage mail, not the excluded message.'
        : '\n  SOMETHING WENT WRONG: see the table.',
    );
    if (!ok) process.exitCode = 1;
    // The release and namespaces the demo used; the same commands as docs/install.md's quick start.
    console.log(`
On your cluster (docs/install.md):
  helm install ${RELEASE} charts/mail-continuity-operator -n ${OPERATOR_NAMESPACE} --create-namespace
  kubectl create namespace mail
  kubectl -n mail create secret generic gmail-service-account --from-file=credentials.json=sa-key.json
  kubectl -n mail apply -f examples/failover-only.yaml   # edit domains, primary.host and acceptFrom first
  kubectl -n mail get mc -w`);
  } finally {
    say('stopping everything the demo started');
    await (stop?.() ?? Promise.resolve());
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
