// The node's Kubernetes parts: kubelet (pods through containerd's CRI),
// kube-proxy (Services as iptables rules) and kube-scheduler, from the same
// multi-call binary as the control plane. What this machine needs of each is
// commented where it is set.
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '../controlplane.js';
import { startDaemon, waitForDaemon, type Daemon } from '../process.js';
import { NODE_IP, POD_CIDR } from './network.js';

export const NODE_NAME = 'mc-node';

export interface NodeParts {
  kubelet: Daemon;
  proxy: Daemon;
  scheduler: Daemon;
  /** Directory the kubelet keeps pods' volumes in (unmounted on stop). */
  kubeletRoot: string;
  stopKubelet(): Promise<void>;
  /** Stops kube-proxy and kube-scheduler, then removes kube-proxy's iptables rules. */
  stopProxyAndScheduler(): Promise<void>;
}

export async function startNodeParts(o: {
  dir: string;
  bins: string;
  kubeconfig: string;
  containerdSocket: string;
  verbose?: boolean;
}): Promise<NodeParts> {
  const { dir, bins, kubeconfig } = o;
  const kubeletRoot = join(dir, 'kubelet');
  await mkdir(kubeletRoot, { recursive: true });
  const [kubeletPort, kubeletHealthz, proxyHealthz, proxyMetrics, schedulerPort] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);

  const kubeletConfig = join(dir, 'kubelet-config.yaml');
  await writeFile(
    kubeletConfig,
    [
      'apiVersion: kubelet.config.k8s.io/v1beta1',
      'kind: KubeletConfiguration',
      // This machine has cgroup v1 (hybrid) and no systemd: cgroupfs, and v1 allowed.
      // The kubelet warns that the cpu and memory hierarchies are not unified: harmless.
      'failCgroupV1: false',
      'cgroupDriver: cgroupfs',
      'failSwapOn: false',
      `address: ${NODE_IP}`,
      `port: ${kubeletPort}`,
      'readOnlyPort: 0',
      'healthzBindAddress: 127.0.0.1',
      `healthzPort: ${kubeletHealthz}`,
      // The apiserver (logs, exec, port-forward) is the only client: it is not
      // given a client certificate, so the kubelet lets anonymous requests in.
      'authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}',
      'authorization: {mode: AlwaysAllow}',
      `containerRuntimeEndpoint: unix://${o.containerdSocket}`,
      `podLogsDir: ${join(dir, 'pod-logs')}`,
      `podCIDR: ${POD_CIDR}`,
      // Test data on a shared disk: never evict for disk pressure, never collect the imported
      // images (nothing can pull them back).
      'evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}',
      'imageGCHighThresholdPercent: 100',
      'imageGCLowThresholdPercent: 99',
      'serializeImagePulls: false',
      'resolvConf: /etc/resolv.conf',
      // Pods that are deleted go at once instead of after the default 1 s sync jitter.
      'syncFrequency: 10s',
      'fileCheckFrequency: 5s',
      'nodeStatusUpdateFrequency: 4s',
      '',
    ].join('\n'),
  );
  const kubelet = startDaemon(
    'kubelet',
    join(bins, 'kubelet'),
    [
      `--config=${kubeletConfig}`,
      `--kubeconfig=${kubeconfig}`,
      `--root-dir=${kubeletRoot}`,
      `--cert-dir=${join(dir, 'kubelet-pki')}`,
      `--hostname-override=${NODE_NAME}`,
      `--node-ip=${NODE_IP}`,
      '--v=1',
    ],
    dir,
    { verbose: o.verbose },
  );

  const proxyConfig = join(dir, 'kube-proxy-config.yaml');
  await writeFile(
    proxyConfig,
    [
      'apiVersion: kubeproxy.config.k8s.io/v1alpha1',
      'kind: KubeProxyConfiguration',
      'mode: iptables',
      `clientConnection: {kubeconfig: ${kubeconfig}}`,
      `hostnameOverride: ${NODE_NAME}`,
      `clusterCIDR: ${POD_CIDR}`,
      `healthzBindAddress: 127.0.0.1:${proxyHealthz}`,
      `metricsBindAddress: 127.0.0.1:${proxyMetrics}`,
      // Leave the machine's conntrack table size alone (it is not ours to tune).
      'conntrack: {maxPerCore: 0}',
      // NodePorts on the node's address only (not every address of the machine).
      `nodePortAddresses: ["${NODE_IP}/32"]`,
      '',
    ].join('\n'),
  );
  const proxy = startDaemon('kube-proxy', join(bins, 'kube-proxy'), [`--config=${proxyConfig}`, '--v=0'], dir, {
    verbose: o.verbose,
  });

  const scheduler = startDaemon(
    'kube-scheduler',
    join(bins, 'kube-scheduler'),
    [
      `--kubeconfig=${kubeconfig}`,
      `--authentication-kubeconfig=${kubeconfig}`,
      `--authorization-kubeconfig=${kubeconfig}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${schedulerPort}`,
      '--v=0',
    ],
    dir,
    { verbose: o.verbose },
  );

  await waitForDaemon(
    'kubelet /healthz',
    async () => (await fetch(`http://127.0.0.1:${kubeletHealthz}/healthz`)).ok,
    60_000,
    kubelet.died,
  );
  await waitForDaemon(
    'kube-proxy /healthz',
    async () => (await fetch(`http://127.0.0.1:${proxyHealthz}/healthz`)).status < 500,
    60_000,
    proxy.died,
  );

  return {
    kubelet,
    proxy,
    scheduler,
    kubeletRoot,
    stopKubelet: () => kubelet.stop(15_000),
    async stopProxyAndScheduler() {
      await scheduler.stop();
      await proxy.stop();
      // kube-proxy's own clean-up mode removes its KUBE-* chains.
      execFileSync(join(bins, 'kube-proxy'), ['--cleanup', '--v=0'], { stdio: 'ignore' });
    },
  };
}
