// Puts a host service on a pod's own loopback address: a forwarder (socat)
// started inside the pod's network namespace listens on 127.0.0.1:<port> and
// connects to the service at the node's address.
//
// The relay talks to Google's token and API endpoints only at their real
// addresses, or at a loopback URL (google.* in the relay config: tests point
// the clients at the Gmail emulator, and a non-loopback override is refused so
// credentials can never be sent elsewhere). In a pod, loopback is the pod's:
// this gives each relay pod the emulator there, the way a sidecar would, and
// follows pods as they come and go (a restarted pod has a new namespace).
import { spawn, type ChildProcess } from 'node:child_process';
import type { Containerd } from './containerd.js';

export interface PodLoopbackForward {
  /** Pods that currently have a forwarder (namespace/name). */
  pods(): string[];
  stop(): Promise<void>;
}

interface Sandbox {
  id: string;
  pod: string;
  netns: string;
}

/**
 * Pod sandboxes of `namespace` in containerd, with their network namespace paths.
 * Asynchronous and short: it runs in the tests' process beside everything else.
 */
async function sandboxes(containerd: Containerd, namespace: string): Promise<Sandbox[]> {
  const ctr = containerd.ctrAsync;
  const ids = (await ctr(['containers', 'ls', '-q', 'labels."io.cri-containerd.kind"==sandbox'])).split('\n').filter(Boolean);
  const out: Sandbox[] = [];
  for (const id of ids) {
    let info: { Labels?: Record<string, string>; Spec?: { linux?: { namespaces?: { type: string; path?: string }[] } } };
    try {
      info = JSON.parse(await ctr(['containers', 'info', id])) as typeof info;
    } catch {
      continue; // removed meanwhile
    }
    const labels = info.Labels ?? {};
    if (labels['io.kubernetes.pod.namespace'] !== namespace) continue;
    const netns = info.Spec?.linux?.namespaces?.find((n) => n.type === 'network')?.path;
    if (netns) out.push({ id, pod: `${namespace}/${labels['io.kubernetes.pod.name']}`, netns });
  }
  return out;
}

/**
 * Every pod of `namespace` whose name starts with `podPrefix` gets 127.0.0.1:`port`
 * forwarded to `target` (host:port on the node's address), for as long as it runs.
 */
export function forwardToPodLoopback(o: {
  containerd: Containerd;
  namespace: string;
  podPrefix: string;
  port: number;
  target: string;
  intervalMs?: number;
}): PodLoopbackForward {
  const live = new Map<string, { pod: string; proc: ChildProcess }>();
  let stopped = false;
  let running = false;
  const sync = async () => {
    if (stopped || running) return;
    running = true;
    let current: Sandbox[];
    try {
      current = (await sandboxes(o.containerd, o.namespace)).filter((s) => s.pod.startsWith(`${o.namespace}/${o.podPrefix}`));
    } catch {
      return; // containerd busy or stopping: next round
    } finally {
      running = false;
    }
    if (stopped) return;
    const ids = new Set(current.map((s) => s.id));
    for (const [id, f] of live) {
      if (!ids.has(id) || f.proc.exitCode !== null) {
        f.proc.kill('SIGKILL');
        live.delete(id);
      }
    }
    for (const s of current) {
      if (live.has(s.id)) continue;
      const proc = spawn(
        'nsenter',
        [`--net=${s.netns}`, 'socat', `TCP-LISTEN:${o.port},bind=127.0.0.1,reuseaddr,fork`, `TCP:${o.target}`],
        { stdio: 'ignore' },
      );
      proc.on('error', () => undefined);
      live.set(s.id, { pod: s.pod, proc });
    }
  };
  const timer = setInterval(() => void sync(), o.intervalMs ?? 500);
  void sync();
  return {
    pods: () => [...live.values()].filter((f) => f.proc.exitCode === null).map((f) => f.pod),
    async stop() {
      stopped = true;
      clearInterval(timer);
      await Promise.all(
        [...live.values()].map(
          (f) =>
            new Promise<void>((resolve) => {
              if (f.proc.exitCode !== null || f.proc.signalCode !== null) return resolve();
              f.proc.once('exit', () => resolve());
              f.proc.kill('SIGKILL');
            }),
        ),
      );
      live.clear();
    },
  };
}
