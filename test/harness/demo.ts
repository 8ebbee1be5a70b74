// `make demo`: the whole product on one machine, through an Exchange outage
// and back. A real control plane (etcd + kube-apiserver built from Go modules),
// the CRD, the operator, examples/demo.yaml, Postfix as Exchange, the Gmail
// emulator, and the relay — as a local process started from the config the
// operator rendered, because there is no kubelet here to run its Pod.
// Ctrl-C at any point stops everything it started.
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { DEMO_USER, formatTable, runTimeline } from './demo-timeline.js';
import { startStack, type Stack } from './stack.js';

const t0 = Date.now();
const stamp = () => `[demo +${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`;
const say = (text: string) => console.log(`\n${stamp()} ${text}`);
const show = (text: string) => console.log(text);

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
  console.log('  Note: no kubelet runs here, so the relay runs as a local process from the config the operator');
  console.log('  rendered into its ConfigMap; Postfix on loopback stands in for Exchange, an emulator for Gmail.');
  let stack: Stack | undefined;
  try {
    stack = await startStack({
      name: manifest.metadata.name,
      namespace: 'mail',
      spec: manifest.spec,
      relays: 1,
      domains: ['corp.example.com'],
      gmailUsers: [DEMO_USER],
      progress: say,
      registerStop: (s) => (stop = s),
    });
    const table = await runTimeline(stack, say, show, t0);
    say('final table');
    console.log(formatTable(table));
    const ok = table.lost === 0 && table.duplicated === 0 && table.atExchange === table.sent;
    console.log(
      ok
        ? '\n  Every message reached Exchange exactly once; Gmail got the outage mail, not the excluded message.'
        : '\n  SOMETHING WENT WRONG: see the table.',
    );
    if (!ok) process.exitCode = 1;
    console.log(`
Try it on a real cluster:
  helm install mail-continuity charts/mail-continuity-operator -n mail-continuity-system --create-namespace
  kubectl create secret generic gmail-service-account --from-file=credentials.json=sa-key.json
  kubectl apply -f examples/failover-only.yaml      # edit domains, primary.host and acceptFrom first
  kubectl get mc -w`);
  } finally {
    say('stopping everything the demo started');
    await (stop?.() ?? Promise.resolve());
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
