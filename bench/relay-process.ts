// The relay as the benchmarks run it: built (dist/), as in the image, in its
// own process, with production timers, optionally inside a memory cgroup.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RelayConfigInput } from '../src/api/relay/config.js';
import { freePort, waitForPort } from '../test/harness/postfix.js';
import { relayTestConfig } from '../test/harness/smtp-tools.js';

/**
 * Production timers (relayTestConfig's are shortened for tests) and otherwise the
 * relay's shipped defaults (20 connections per destination like Postfix's
 * default_destination_concurrency_limit, no greeting pause), except the client
 * limits: every load-generator session comes from one address.
 */
export const BENCH_RELAY_TUNING = {
  minBackoffMs: 30_000,
  maxBackoffMs: 600_000,
  sweepIntervalMs: 5_000,
  maxClients: 1_000,
  maxClientsPerAddress: 1_000,
} satisfies RelayConfigInput['tuning'];

export interface BenchRelay {
  port: number;
  httpPort: number;
  pid: number;
  stop(): Promise<void>;
}

/** A DualDelivery relay delivering to the two ports; `env` is laid over this process's environment. */
export async function startBenchRelay(o: {
  primaryPort: number;
  backupPort: number;
  instance: string;
  env: Readonly<Record<string, string>>;
  tuning?: RelayConfigInput['tuning'];
  nodeArgs?: string[];
  /** A cgroup directory the relay process is moved into. */
  cgroup?: string;
  /** spec.policy (e.g. exclusion rules); the default policy when absent. */
  policy?: Record<string, unknown>;
}): Promise<BenchRelay> {
  const dir = await mkdtemp(join(tmpdir(), `bench-${o.instance}-`));
  const port = await freePort();
  const httpPort = await freePort();
  const config = relayTestConfig({
    spool: join(dir, 'spool'),
    primaryPort: o.primaryPort,
    backupPort: o.backupPort,
    listenPort: port,
    instance: o.instance,
    spec: { mode: 'DualDelivery', ...(o.policy ? { policy: o.policy } : {}) },
    tuning: { ...BENCH_RELAY_TUNING, ...o.tuning },
  });
  config.http.port = httpPort;
  await writeFile(join(dir, 'relay.json'), JSON.stringify(config));
  const child = spawn(process.execPath, [...(o.nodeArgs ?? []), 'dist/src/cli.js', 'relay', '--config', join(dir, 'relay.json')], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, ...o.env },
  });
  if (o.cgroup) await writeFile(join(o.cgroup, 'cgroup.procs'), String(child.pid));
  await waitForPort(port, 'up', 60_000);
  return {
    port,
    httpPort,
    pid: child.pid!,
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A memory cgroup with the relay pod's default limit (limits.memory 256Mi in
 * the StatefulSet), so Node sizes its heap as it would in the pod; undefined
 * where the machine has no writable memory cgroup (then the relay runs unlimited).
 */
export async function podMemoryLimit(): Promise<string | undefined> {
  const limit = String(256 * 1024 * 1024);
  for (const [base, file] of [
    ['/sys/fs/cgroup/memory', 'memory.limit_in_bytes'],
    ['/sys/fs/cgroup', 'memory.max'],
  ] as const) {
    const dir = join(base, 'mail-continuity-bench');
    try {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, file), limit);
      return dir;
    } catch {
      // not this hierarchy
    }
  }
  return undefined;
}
