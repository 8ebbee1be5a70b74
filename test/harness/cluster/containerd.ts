// A private containerd for the node: its own root, state dir and socket under
// the cluster's directory (nothing shared with a containerd the machine may
// run), its CRI plugin set up for this machine, and images imported from
// archives (no registry is reachable, so nothing is ever pulled).
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { killProcesses, startDaemon, waitForDaemon, type Daemon } from '../process.js';
import { CNI_BIN_DIR } from './network.js';

/** The sandbox ("pause") image containerd's CRI runs in every pod: imported, never pulled. */
const run = promisify(execFile);

export const PAUSE_IMAGE = 'registry.k8s.io/pause:3.10';

export interface Containerd {
  socket: string;
  root: string;
  state: string;
  /** `ctr` against this containerd, namespace k8s.io (the CRI's). */
  ctr(args: string[]): string;
  /** The same without blocking the event loop, with a short timeout (for pollers). */
  ctrAsync(args: string[]): Promise<string>;
  importImage(archive: string): void;
  /** Stops containerd and every shim it started; what the kubelet did not remove is killed. */
  stop(): Promise<void>;
}

export async function startContainerd(
  dir: string,
  cniConfDir: string,
  opts: { verbose?: boolean } = {},
): Promise<Containerd> {
  const base = join(dir, 'containerd');
  const root = join(base, 'root');
  const state = join(base, 'state');
  const socket = join(base, 'containerd.sock');
  await mkdir(root, { recursive: true });
  await mkdir(state, { recursive: true });
  const config = join(base, 'config.toml');
  await writeFile(
    config,
    [
      'version = 2',
      `root = "${root}"`,
      `state = "${state}"`,
      '[grpc]',
      `  address = "${socket}"`,
      '[ttrpc]',
      `  address = "${socket}.ttrpc"`,
      '[debug]',
      '  level = "warn"',
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = "${join(base, 'opt')}"`,
      '[plugins."io.containerd.grpc.v1.cri"]',
      `  sandbox_image = "${PAUSE_IMAGE}"`,
      // This machine refuses a negative oom_score_adj: without this every pod
      // sandbox fails in runc ("can't get final child's PID from pipe: EOF").
      '  restrict_oom_score_adj = true',
      '  [plugins."io.containerd.grpc.v1.cri".containerd]',
      '    snapshotter = "overlayfs"',
      '    default_runtime_name = "runc"',
      '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
      '      runtime_type = "io.containerd.runc.v2"',
      '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
      // The kubelet's cgroupDriver is cgroupfs (no systemd here).
      '        SystemdCgroup = false',
      '  [plugins."io.containerd.grpc.v1.cri".cni]',
      `    bin_dir = "${CNI_BIN_DIR}"`,
      `    conf_dir = "${cniConfDir}"`,
      '',
    ].join('\n'),
  );
  const daemon: Daemon = startDaemon('containerd', '/usr/bin/containerd', ['--config', config], dir, opts);
  const ctrArgs = (args: string[]) => ['--address', socket, '--namespace', 'k8s.io', ...args];
  const ctr = (args: string[]) =>
    execFileSync('ctr', ctrArgs(args), {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      // An import of the product image takes seconds; a containerd that does not answer must not
      // hold the tests for minutes.
      timeout: 60_000,
    });
  await waitForDaemon(
    'containerd',
    async () => existsSync(socket) && /Server:/.test(ctr(['version'])),
    30_000,
    daemon.died,
  );
  return {
    socket,
    root,
    state,
    ctr,
    ctrAsync: async (args) => (await run('ctr', ctrArgs(args), { timeout: 5000 })).stdout,
    importImage(archive) {
      ctr(['images', 'import', '--no-unpack=false', archive]);
    },
    async stop() {
      await daemon.stop(10_000);
      // Shims outlive containerd by design (containers keep running across a
      // containerd restart): kill the ones of this containerd.
      killProcesses((args) => args.includes('containerd-shim') && args.includes(socket));
    },
  };
}

/** Mount points at or under `prefix`, deepest first (to unmount in that order). */
export function mountsUnder(prefix: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === prefix || m.startsWith(prefix + '/')))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts everything at or under `dir`, deepest first (lazily: a busy mount goes when it is free). */
export function unmountUnder(dir: string): void {
  for (const m of mountsUnder(dir)) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
}
