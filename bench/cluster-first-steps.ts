// A user's first steps in the one-node cluster (not a test), side by side with
// a peer: the product installed as in the cluster suite (the image built from
// the Dockerfile, helm install), then, N rounds each, in fresh namespaces:
//   operator: kubectl apply of a MailContinuity (1 relay) -> its first relay pod Ready
//             (the operator renders the ServiceAccount, Secret, ConfigMap, Services,
//             StatefulSet and PDB, the scheduler binds the PVC, the kubelet starts the pod);
//   peer:     kubectl apply of the very objects the operator rendered for round 1, copied
//             without their owner -> the first pod Ready (what the kubelet and the
//             StatefulSet controller take on their own, with no operator in the path).
// Also: helm install -> an operator leader (one sample; the cluster's first install).
//
//   node --import tsx bench/cluster-first-steps.ts [--rounds 5]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import YAML from 'yaml';
import { installProduct, onThisCluster } from '../test/harness/cluster/product.js';
import { kubeView } from '../test/harness/cluster/view.js';
import { DEMO_USER } from '../test/harness/demo-timeline.js';
import { waitFor } from '../test/harness/wait.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' } } });
const rounds = Number(values.rounds);
const demo = YAML.parse(readFileSync('examples/demo.yaml', 'utf8')) as { spec: Record<string, unknown> };
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const p = await installProduct({
  name: 'corp',
  namespace: 'mail',
  spec: demo.spec,
  domains: ['corp.example.com'],
  gmailUsers: [DEMO_USER],
  progress: (l) => console.error(`[bench] ${l}`),
});
try {
  const { kubectl } = p;
  const secret = (ns: string) =>
    kubectl(['-n', ns, 'create', 'secret', 'generic', 'gmail-service-account', `--from-literal=credentials.json=${p.gmail.serviceAccount.keyJson}`]);
  const firstReady = async (ns: string, selector: string) =>
    waitFor(`a Ready pod in ${ns}`, () => kubectl(['-n', ns, 'get', 'pods', '-l', selector, '-o', 'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}']).includes('True'), 180_000, 100);
  const operator: number[] = [];
  const peer: number[] = [];
  let rendered = '';
  for (let i = 1; i <= rounds; i++) {
    const ns = `bench-mc-${i}`;
    kubectl(['create', 'namespace', ns]);
    secret(ns);
    const t = Date.now();
    kubeView(p.cluster, ns, 'corp').apply(onThisCluster(demo.spec, p.postfix.port));
    await firstReady(ns, 'app.kubernetes.io/instance=corp');
    operator.push((Date.now() - t) / 1000);
    if (i === 1) {
      const kinds = 'serviceaccount,secret,configmap,service,statefulset,poddisruptionbudget';
      type Obj = { kind: string; metadata: { name: string; labels?: object }; spec?: Record<string, unknown>; status?: unknown };
      const list = JSON.parse(kubectl(['-n', ns, 'get', kinds, '-l', 'app.kubernetes.io/instance=corp', '-o', 'json'])) as { items: Obj[] };
      for (const o of list.items) {
        // No owner (the operator leaves them alone), no server-set fields.
        o.metadata = { name: o.metadata.name, labels: o.metadata.labels };
        delete o.status;
        if (o.kind === 'Service' && o.spec) {
          delete o.spec.clusterIP;
          delete o.spec.clusterIPs;
        }
      }
      rendered = JSON.stringify(list);
    }
    const pns = `bench-peer-${i}`;
    kubectl(['create', 'namespace', pns]);
    secret(pns);
    const tp = Date.now();
    kubectl(['-n', pns, 'apply', '-f', '-'], rendered);
    await firstReady(pns, 'app.kubernetes.io/instance=corp');
    peer.push((Date.now() - tp) / 1000);
    console.error(`[bench] round ${i}: MailContinuity -> Ready ${operator.at(-1)} s, its objects applied directly -> Ready ${peer.at(-1)} s`);
  }
  console.log(JSON.stringify({ timings: p.timings, rounds, operator, peer, medianOperator: median(operator), medianPeer: median(peer), ratio: median(operator) / median(peer) }, null, 2));
} finally {
  await p.stop();
}
