// One cluster at a time on this machine (the bridge, the node address and
// kube-proxy's iptables rules are the machine's): a lock file names the
// process that runs it. A cluster whose process died without its clean-up
// (killed, crashed) leaves containers, mounts and rules behind: the next
// start finds the lock's process gone and removes what it left.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killProcesses } from '../process.js';
import { unmountUnder } from './containerd.js';
import { BRIDGE, bridgeExists, cniNetns, removeKubeChains, removeNetns } from './network.js';

const LOCK = join(tmpdir(), 'mc-cluster.lock');
export const CLUSTER_DIR_PREFIX = 'mc-cluster-';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Takes the machine's cluster lock; a dead holder's leftovers are removed first. Returns the release function. */
export function takeClusterLock(progress: (line: string) => void): () => void {
  const holder = existsSync(LOCK) ? Number(readFileSync(LOCK, 'utf8').trim()) : 0;
  if (holder && holder !== process.pid && alive(holder)) {
    throw new Error(`another cluster of the harness runs (process ${holder}, ${LOCK}); one at a time on a machine`);
  }
  if (holder || bridgeExists()) {
    progress(`removing what a cluster that was not stopped left behind${holder ? ` (process ${holder})` : ''}`);
    removeStale();
  }
  writeFileSync(LOCK, String(process.pid));
  return () => {
    if (existsSync(LOCK) && Number(readFileSync(LOCK, 'utf8').trim()) === process.pid) rmSync(LOCK, { force: true });
  };
}

/** Kills shims of dead clusters, unmounts and removes their directories, netns, iptables chains, bridge, cgroups. */
export function removeStale(): void {
  const dirs = readdirSync(tmpdir())
    .filter((d) => d.startsWith(CLUSTER_DIR_PREFIX))
    .map((d) => join(tmpdir(), d));
  killProcesses((args) => dirs.some((d) => args.includes(d)));
  for (const d of dirs) {
    unmountUnder(d);
    rmSync(d, { recursive: true, force: true });
  }
  removeNetns(cniNetns());
  removeKubeChains();
  if (bridgeExists()) execFileSync('ip', ['link', 'del', BRIDGE]);
  removeKubepodsCgroups({ killProcesses: true });
}

/**
 * The cgroup the kubelet puts pods under (cgroupfs driver), in every v1 hierarchy.
 * With killProcesses, what still runs in it (containers whose shim died with their
 * containerd) is killed first.
 */
export function removeKubepodsCgroups(o: { killProcesses?: boolean } = {}): void {
  for (const hierarchy of readdirSync('/sys/fs/cgroup')) {
    const top = join('/sys/fs/cgroup', hierarchy, 'kubepods');
    if (existsSync(top)) removeCgroupTree(top, !!o.killProcesses);
  }
}

function removeCgroupTree(path: string, kill: boolean): void {
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    if (entry.isDirectory()) removeCgroupTree(join(path, entry.name), kill);
  }
  if (kill) {
    for (const pid of readFileSync(join(path, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  try {
    execFileSync('rmdir', [path], { stdio: 'ignore' });
  } catch {
    // still busy: a process outlived its pod
  }
}
