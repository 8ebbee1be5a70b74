// Long-running child processes of the harness (etcd, kube-apiserver, kubelet,
// containerd, ...): output to a log file per process, killed when the test
// process exits even after a crash, waits that fail at once with the log's
// tail when the process they wait for has died.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Processes still running when the test process exits are killed, even after a crash. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

export interface Daemon {
  name: string;
  child: ChildProcess;
  log: string;
  /** Why the process is gone (exit code and the log's tail), or undefined while it runs. */
  died(): string | undefined;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts `bin args` with its output appended to `<logDir>/<name>.log` (and stderr echoed when verbose). */
export function startDaemon(
  name: string,
  bin: string,
  args: string[],
  logDir: string,
  opts: { verbose?: boolean; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Daemon {
  const log = join(logDir, `${name}.log`);
  const out = createWriteStream(log, { flags: 'a' });
  const spawnOpts: SpawnOptions = { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd };
  const child = spawn(bin, args, spawnOpts);
  live.add(child);
  child.stdout!.pipe(out, { end: false });
  child.stderr!.pipe(out, { end: false });
  if (opts.verbose) child.stderr!.on('data', (d: Buffer) => process.stderr.write(`[${name}] ${d}`));
  child.once('exit', () => live.delete(child));
  return {
    name,
    child,
    log,
    died: () =>
      child.exitCode !== null || child.signalCode !== null
        ? `${name} exited (${child.exitCode ?? child.signalCode}); see ${log}:\n${tailOf(log)}`
        : undefined,
    stop: (graceMs = 5000) => stopProcess(child, graceMs),
  };
}

export async function stopProcess(child: ChildProcess | undefined, graceMs = 5000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** The last `lines` lines of a log file. */
export function tailOf(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Polls `check` every 200 ms until it returns true. Ends at once with the
 * process's log when `died` reports it gone; on timeout the error names what
 * was awaited and the last error `check` threw.
 */
export async function waitForDaemon(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  died?: () => string | undefined,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    const reason = died?.();
    if (reason) throw new Error(`${what}: ${reason}`);
    try {
      if (await check()) return;
    } catch (err) {
      lastError = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}`);
}

/** SIGKILLs every process of the machine whose command line `match` accepts (what a dead parent left running). */
export function killProcesses(match: (args: string) => boolean): void {
  for (const line of execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' }).split('\n')) {
    const m = /^\s*(\d+)\s+(.*)$/.exec(line);
    if (!m || Number(m[1]) === process.pid || !match(m[2]!)) continue;
    try {
      process.kill(Number(m[1]), 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}
