// The product installed the way a user installs it, in the one-node cluster:
// the image built from the project's Dockerfile, `helm install` of the chart,
// a Secret and a MailContinuity applied with kubectl, the relay StatefulSet's
// pods Running and Ready on their PVCs, mail through the relay Service.
// Postfix (as Exchange) and the Gmail emulator run on the node's address,
// where pods reach them; the emulator is also put on each relay pod's
// loopback (pod-loopback.ts), the only place the relay lets Google's endpoints
// be pointed at.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startGmailEmulator, type GmailEmulator } from '../gmail-emulator.js';
import { startPostfix, type PostfixInstance } from '../postfix.js';
import { binDir, freePort } from '../controlplane.js';
import { waitFor } from '../wait.js';
import { startCluster, type Cluster } from './cluster.js';
import { NODE_IP, POD_CIDR } from './network.js';
import { forwardToPodLoopback, type PodLoopbackForward } from './pod-loopback.js';
import { projectImage, type ProjectImage } from './image.js';
import { kubeView, type KubeView } from './view.js';

export const OPERATOR_NAMESPACE = 'mail-continuity-system';
export const RELEASE = 'mail-continuity-operator';

export interface ProductOptions {
  name: string;
  namespace: string;
  /** The MailContinuity spec; primary host/port and acceptFrom are set to the cluster's. */
  spec: Record<string, unknown>;
  domains: string[];
  gmailUsers: string[];
  /** An image already built (default: scripts/build-image.sh, cached by its inputs). */
  image?: ProjectImage;
  /** Extra `helm install --set` values. */
  helmSet?: string[];
  progress?: (line: string) => void;
  /** Lines within a step (the image build's); default: progress. */
  detail?: (line: string) => void;
  registerStop?: (stop: () => Promise<void>) => void;
}

export interface InstalledProduct extends KubeView {
  cluster: Cluster;
  postfix: PostfixInstance;
  gmail: GmailEmulator;
  forward: PodLoopbackForward;
  image: string;
  /** The relay Service's ClusterIP and port (reached from the host through kube-proxy). */
  smtp: { host: string; port: number };
  helm(args: string[]): string;
  timings: Timings;
  stop(): Promise<void>;
}

/** How long the user's first steps took (seconds): the cluster, `helm install` to a leader, `kubectl apply` to a Ready relay. */
export interface Timings {
  clusterSeconds: number;
  helmToLeaderSeconds: number;
  applyToFirstReadySeconds: number;
}

export async function installProduct(o: ProductOptions): Promise<InstalledProduct> {
  const say = o.progress ?? (() => undefined);
  const stops: (() => Promise<void>)[] = [];
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      for (const f of stops.reverse()) await f().catch((err: Error) => say(`stop: ${err.message}`));
    })());
  o.registerStop?.(stop);
  try {
    const image = o.image ?? (await projectImage(say, o.detail));
    const t0 = Date.now();
    const cluster = await startCluster({ images: image.archives, progress: (l) => say(`cluster: ${l}`) });
    const timings: Timings = { clusterSeconds: (Date.now() - t0) / 1000, helmToLeaderSeconds: 0, applyToFirstReadySeconds: 0 };
    stops.push(() => cluster.stop());
    const { kubectl } = cluster;
    const helm = (args: string[]) =>
      execFileSync(join(binDir(), 'helm'), [`--kubeconfig=${cluster.kubeconfig}`, ...args], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 180_000,
      });

    say(`starting Postfix as Exchange and the Gmail emulator on the node address ${NODE_IP}`);
    const postfix = await startPostfix({ domains: o.domains, host: NODE_IP, clientNetworks: [POD_CIDR] });
    stops.push(() => postfix.destroy());
    const gmail = await startGmailEmulator({ users: o.gmailUsers, host: NODE_IP });
    stops.push(() => gmail.close());
    const googlePort = await freePort();
    const forward = forwardToPodLoopback({
      containerd: cluster.containerd,
      namespace: o.namespace,
      podPrefix: `${o.name}-relay-`,
      port: googlePort,
      target: `${NODE_IP}:${new URL(gmail.url).port}`,
    });
    stops.push(() => forward.stop()); // first: it polls the node's containerd

    say(`helm install ${RELEASE} charts/mail-continuity-operator (image ${image.name})`);
    const [repository, tag] = splitImage(image.name);
    const helmAt = Date.now();
    helm([
      'install',
      RELEASE,
      'charts/mail-continuity-operator',
      '--namespace',
      OPERATOR_NAMESPACE,
      '--create-namespace',
      '--set',
      `image.repository=${repository},image.tag=${tag},image.pullPolicy=Never`,
      // The relays' Google clients go to the emulator on each pod's loopback (only loopback is accepted).
      '--set-json',
      `extraArgs=${JSON.stringify([
        `--relay-google-root-url=http://127.0.0.1:${googlePort}/`,
        `--relay-google-token-url=http://127.0.0.1:${googlePort}/token`,
      ])}`,
      ...(o.helmSet ?? []).flatMap((s) => ['--set', s]),
      '--wait',
      '--timeout=3m',
    ]);
    const view = kubeView(cluster, o.namespace, o.name);
    await waitFor('an operator leader (the Lease has a holder)', () => view.leader(), 60_000, 250);
    timings.helmToLeaderSeconds = (Date.now() - helmAt) / 1000;

    say(`kubectl apply: Secret and MailContinuity ${o.namespace}/${o.name} (primary = Postfix on ${NODE_IP}:${postfix.port})`);
    kubectl(['create', 'namespace', o.namespace]);
    kubectl([
      '-n',
      o.namespace,
      'create',
      'secret',
      'generic',
      'gmail-service-account',
      `--from-literal=credentials.json=${gmail.serviceAccount.keyJson}`,
    ]);
    const placed = (spec: Record<string, unknown>) => onThisCluster(spec, postfix.port);
    const replicas = Number((o.spec.relay as { replicas?: number } | undefined)?.replicas ?? 1);
    const applyAt = Date.now();
    view.apply(placed(o.spec));
    await waitFor('a first relay pod Ready', () => view.relayPods().some((r) => r.ready), 180_000, 250);
    timings.applyToFirstReadySeconds = (Date.now() - applyAt) / 1000;

    say('waiting for the relay pods: Running and Ready, their spool PVCs Bound');
    await view.waitRelaysReady(replicas, 180_000);
    const svc = JSON.parse(kubectl(['-n', o.namespace, 'get', 'service', `${o.name}-relay`, '-o', 'json'])) as {
      spec: { clusterIP: string; ports: { name: string; port: number }[] };
    };
    const smtp = { host: svc.spec.clusterIP, port: svc.spec.ports.find((p) => p.name === 'smtp')!.port };
    await waitFor(
      'the relays on their pods\' loopback with the emulator',
      () => forward.pods().length >= replicas,
      30_000,
    );
    return {
      ...view,
      // Every spec applied gets this cluster's primary and edge, as the first one did.
      apply: (spec) => view.apply(placed(spec)),
      cluster,
      postfix,
      gmail,
      forward,
      image: image.name,
      smtp,
      helm,
      timings,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The spec with the primary at Postfix on the node and the edge (acceptFrom) at the pod network. */
export function onThisCluster(input: Record<string, unknown>, primaryPort: number): Record<string, unknown> {
  const spec = structuredClone(input) as Record<string, Record<string, unknown>>;
  spec.primary = { ...spec.primary, host: NODE_IP, port: primaryPort, tls: 'None' };
  // The edge here is the node itself: kube-proxy masquerades host -> ClusterIP traffic to the node address.
  spec.relay = { ...spec.relay, acceptFrom: [POD_CIDR] };
  return spec;
}

function splitImage(name: string): [string, string] {
  const i = name.lastIndexOf(':');
  return [name.slice(0, i), name.slice(i + 1)];
}

