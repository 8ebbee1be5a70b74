// A real one-node Kubernetes cluster on this machine, for the cluster suite and
// `make demo`: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// a private containerd, kubelet and kube-proxy, pods on a CNI bridge, local
// PersistentVolumes, and the project's image imported into the node (nothing
// is pulled: there is no registry). Started and stopped like the control plane,
// with a progress line per step; stop() leaves no container, mount, iptables
// rule, bridge or cgroup behind (test/cluster/cleanup.test.ts checks).
//
//   const cluster = await startCluster({ images: [pauseArchive, imageArchive], progress: console.log });
//   cluster.kubectl(['get', 'pods', '-A']);
//   await cluster.stop();
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binDir, startControlPlane, type ControlPlane } from '../controlplane.js';
import { waitFor } from '../wait.js';
import { startContainerd, unmountUnder, type Containerd } from './containerd.js';
import { setupNetwork, NODE_IP, type NodeNetwork } from './network.js';
import { NODE_NAME, startNodeParts, type NodeParts } from './node.js';
import { CLUSTER_DIR_PREFIX, removeKubepodsCgroups, takeClusterLock } from './stale.js';
import { localVolumes } from './storage.js';

export { NODE_IP, NODE_NAME };

export interface ClusterOptions {
  /** Image archives imported into the node's containerd (the pause image among them). */
  images: string[];
  /** Local PersistentVolumes to create (default 16). */
  volumes?: number;
  progress?: (line: string) => void;
  verbose?: boolean;
}

export interface Cluster {
  cp: ControlPlane;
  dir: string;
  kubeconfig: string;
  containerd: Containerd;
  kubectl(args: string[], input?: string): string;
  stop(): Promise<void>;
}

export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const progress = opts.progress ?? (() => undefined);
  const bins = binDir();
  for (const part of ['kubelet', 'kube-proxy', 'kube-scheduler']) {
    if (!existsSync(join(bins, part))) throw new Error(`${part} not found in ${bins}: run 'make install'`);
  }
  const release = takeClusterLock(progress);
  const dir = await mkdtemp(join(tmpdir(), CLUSTER_DIR_PREFIX));
  const undo: (() => Promise<void> | void)[] = [release];
  const stopAll = async () => {
    for (const f of undo.reverse()) {
      try {
        await f();
      } catch (err) {
        progress(`clean-up step failed: ${(err as Error).message}`);
      }
    }
    undo.length = 0;
    if (process.env.MC_HARNESS_KEEP !== '1') await rm(dir, { recursive: true, force: true });
  };
  const step = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    progress(what);
    try {
      return await f();
    } catch (err) {
      throw new Error(`cluster: ${what}: ${(err as Error).message}`);
    }
  };

  try {
    const net: NodeNetwork = await step(`network: bridge with the node address ${NODE_IP}`, () => setupNetwork(dir));
    undo.push(() => net.teardown());
    const cp = await step('control plane: etcd, kube-apiserver, kube-controller-manager', () =>
      startControlPlane({ controllerManager: true, cluster: { address: NODE_IP }, verbose: opts.verbose }),
    );
    undo.push(() => cp.stop());
    undo.push(() => removeKubepodsCgroups());
    const containerd = await step('containerd (private root, state and socket)', () =>
      startContainerd(dir, net.cniConfDir, { verbose: opts.verbose }),
    );
    undo.push(() => unmountUnder(dir));
    undo.push(() => containerd.stop());
    await step(`importing ${opts.images.length} image(s) into the node`, async () => {
      for (const archive of opts.images) containerd.importImage(archive);
    });
    const node: NodeParts = await step('kubelet, kube-proxy, kube-scheduler', () =>
      startNodeParts({ dir, bins, kubeconfig: cp.kubeconfig, containerdSocket: containerd.socket, verbose: opts.verbose }),
    );
    undo.push(() => node.stopKubelet());
    undo.push(() => drainNode(cp, containerd, progress));
    undo.push(() => cp.stopControllerManager());
    undo.push(() => node.stopProxyAndScheduler());
    await step(`node ${NODE_NAME} Ready`, () =>
      waitFor(
        `node ${NODE_NAME} Ready and untainted`,
        () => {
          const n = JSON.parse(cp.kubectl(['get', 'node', NODE_NAME, '-o', 'json'])) as {
            spec: { taints?: unknown[] };
            status: { conditions: { type: string; status: string }[] };
          };
          const ready = n.status.conditions.find((c) => c.type === 'Ready')?.status === 'True';
          return ready && !(n.spec.taints ?? []).length;
        },
        120_000,
        500,
      ),
    );
    await step('storage: default StorageClass of local PersistentVolumes', async () => {
      cp.kubectl(['apply', '-f', '-'], await localVolumes(dir, opts.volumes ?? 16));
    });
    return { cp, dir, kubeconfig: cp.kubeconfig, containerd, kubectl: cp.kubectl, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Deletes every pod and waits until containerd runs no task: sandboxes stopped, their netns and CNI rules gone. */
async function drainNode(cp: ControlPlane, containerd: Containerd, progress: (l: string) => void): Promise<void> {
  progress('removing every pod from the node');
  cp.kubectl(['delete', 'pods', '--all', '--all-namespaces', '--grace-period=1', '--wait=false']);
  await waitFor(
    'no pod task left in containerd',
    () => containerd.ctr(['tasks', 'ls', '-q']).trim() === '',
    90_000,
    500,
  ).catch((err: Error) => progress(`${err.message}; killing what is left`));
  for (const id of containerd.ctr(['tasks', 'ls', '-q']).split('\n').filter(Boolean)) {
    try {
      containerd.ctr(['tasks', 'kill', '-s', 'SIGKILL', id]);
    } catch {
      // exited meanwhile
    }
  }
}
