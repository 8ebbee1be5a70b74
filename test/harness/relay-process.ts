// The relay as its own process (src/relay/main.ts through tsx), for tests that
// look at the process from outside: its memory (/proc), its system calls
// (strace), a kill. Log lines are parsed as they come.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RelayConfig } from '../../src/api/relay/config.js';
import { waitUntil } from './wait.js';

export interface RelayProcess {
  proc: ChildProcess;
  lines: Array<Record<string, unknown>>;
  exited: Promise<number | null>;
  stderr(): string;
}

export const REPO_ROOT = join(import.meta.dirname, '..', '..');

/** Node and its arguments that run the relay with `configFile`. */
export function relayCommand(configFile: string): string[] {
  return [process.execPath, '--import', 'tsx', 'src/relay/main.ts', '--config', configFile];
}

/** Spawns `command` (default: relayCommand) and collects the relay's JSON log lines from stdout. */
export function spawnRelayProcess(configFile: string, command = relayCommand(configFile)): RelayProcess {
  const proc = spawn(command[0]!, command.slice(1), { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  const lines: Array<Record<string, unknown>> = [];
  let rest = '';
  proc.stdout!.on('data', (c: Buffer) => {
    rest += c.toString();
    const parts = rest.split('\n');
    rest = parts.pop()!;
    for (const p of parts) {
      try {
        lines.push(JSON.parse(p) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    }
  });
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, lines, exited, stderr: () => stderr };
}

/** Writes `config` next to the spool and starts the relay; resolves once it logged that it started. */
export async function startRelayProcess(config: RelayConfig, dir: string, command?: (configFile: string) => string[]): Promise<RelayProcess> {
  const configFile = join(dir, `relay-${config.instance}.json`);
  await writeFile(configFile, JSON.stringify(config));
  const r = spawnRelayProcess(configFile, command?.(configFile));
  await waitUntil('relay started', 60_000, () => {
    if (r.proc.exitCode !== null) throw new Error(`relay exited ${r.proc.exitCode}: ${r.stderr()}`);
    return r.lines.some((l) => l.msg === 'relay started');
  });
  return r;
}

/**
 * The relay's own pid: the spawned process, or its child when a wrapper (strace) runs it
 * (a wrapper that gets SIGTERM may leave the relay running).
 */
export async function relayPid(r: RelayProcess): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const pid = r.proc.pid!;
  const children = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  const first = Number(children.trim().split(/\s+/)[0]);
  return first > 0 ? first : pid;
}

/** Stops the relay (SIGTERM, then SIGKILL after `graceMs`); a wrapper ends with it. */
export async function stopRelayProcess(r: RelayProcess | undefined, graceMs = 10_000): Promise<void> {
  if (!r || r.proc.exitCode !== null || r.proc.signalCode !== null) return;
  const pid = await relayPid(r);
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(pid, s);
    } catch {
      // already gone
    }
  };
  signal('SIGTERM');
  const t = setTimeout(() => signal('SIGKILL'), graceMs);
  await r.exited;
  clearTimeout(t);
}

/** VmRSS and VmHWM (peak) of a process, in bytes. */
export async function processMemory(pid: number): Promise<{ rss: number; peak: number }> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(/^(\w+):\s+(\d+) kB$/m.exec(status.split('\n').find((l) => l.startsWith(`${k}:`)) ?? '')?.[2] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}
