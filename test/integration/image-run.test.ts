// The image built from the real Dockerfile, run as a cluster runs it:
// scripts/build-image.sh builds it with buildah from local stand-ins of the
// base images (minutes the first time, a second afterwards), a private
// containerd (its own root, state and socket in a temporary directory, never
// the system's) imports the archives as the cluster harness does, and `ctr run`
// starts the image's own entrypoint on a read-only root file system, as the
// user the image names. Needs root (containerd), like the cluster.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const progress = (msg: string) =>
  process.stderr.write(`[image-run] ${new Date().toISOString().slice(11, 19)} ${msg}\n`);

interface Built {
  image: string;
  archive: string;
  pauseImage: string;
  pauseArchive: string;
}

/** scripts/build-image.sh: "NAME ARCHIVE" per line on stdout, its progress on our stderr. */
function buildImage(): Built {
  progress('scripts/build-image.sh (cached: about a second; cold: several minutes)');
  const res = spawnSync('scripts/build-image.sh', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (res.status !== 0) throw new Error(`scripts/build-image.sh failed (exit ${res.status})`);
  const [app, pause] = res.stdout
    .trim()
    .split('\n')
    .map((l) => l.split(' '));
  return { image: app![0]!, archive: app![1]!, pauseImage: pause![0]!, pauseArchive: pause![1]! };
}

/** The image's config from its docker-archive: what the kubelet would start. */
function imageConfig(archive: string): { Entrypoint: string[]; Cmd?: string[]; User: string; Env: string[] } {
  const tar = (file: string) => spawnSync('tar', ['-xOf', archive, file], { encoding: 'utf8' }).stdout;
  const [manifest] = JSON.parse(tar('manifest.json')) as { Config: string }[];
  return (JSON.parse(tar(manifest!.Config)) as { config: ReturnType<typeof imageConfig> }).config;
}

class PrivateContainerd {
  readonly dir = mkdtempSync(join(tmpdir(), 'mc-containerd-'));
  readonly socket = join(this.dir, 'containerd.sock');
  private proc?: ChildProcess;

  async start(): Promise<void> {
    const d = this.dir;
    writeFileSync(
      join(d, 'config.toml'),
      [
        'version = 2',
        `root = "${d}/root"`,
        `state = "${d}/state"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        `[grpc]\n  address = "${this.socket}"`,
        `[ttrpc]\n  address = "${this.socket}.ttrpc"`,
        `[plugins."io.containerd.internal.v1.opt"]\n  path = "${d}/opt"`,
      ].join('\n'),
    );
    this.proc = spawn('containerd', ['--config', join(d, 'config.toml'), '--log-level', 'warn'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    this.proc.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    for (let i = 0; i < 100; i++) {
      if (this.ctr('version').status === 0) return;
      if (this.proc.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`containerd did not start: ${log}`);
  }

  ctr(...args: string[]) {
    return spawnSync('ctr', ['--address', this.socket, '--namespace', 'k8s.io', ...args], {
      encoding: 'utf8',
      timeout: 120_000,
    });
  }

  /** `ctr run --rm --read-only IMAGE ID ARGS...` (ARGS replace the image's entrypoint and command). */
  run(image: string, id: string, args: string[]) {
    return this.ctr('run', ...this.runFlags(), '--read-only', image, `${id}-${process.pid}`, ...args);
  }

  /** runc's state and the IO FIFOs in the private directory too. */
  runFlags(): string[] {
    return ['--rm', '--runc-root', join(this.dir, 'runc'), '--fifo-dir', join(this.dir, 'fifo')];
  }

  /** Mounts under the private directory (containers' root file systems). */
  mounts(): string[] {
    return readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[1] ?? '')
      .filter((m) => m.startsWith(this.dir));
  }

  async stop(): Promise<void> {
    if (!existsSync(this.dir)) return;
    for (const id of this.ctr('tasks', 'list', '-q').stdout.split('\n').filter(Boolean))
      this.ctr('tasks', 'kill', '--signal', 'SIGKILL', id);
    for (const id of this.ctr('containers', 'list', '-q').stdout.split('\n').filter(Boolean))
      this.ctr('containers', 'delete', id);
    if (this.proc && this.proc.exitCode === null) {
      const exited = new Promise((r) => this.proc!.once('exit', r));
      this.proc.kill('SIGTERM');
      await exited;
    }
    for (const m of this.mounts().reverse()) spawnSync('umount', ['-l', m]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

describe('the image from the Dockerfile, in a private containerd', () => {
  let built: Built;
  let entrypoint: string[];
  const containerd = new PrivateContainerd();

  beforeAll(async () => {
    built = buildImage();
    entrypoint = imageConfig(built.archive).Entrypoint;
    progress('starting a private containerd and importing both archives');
    await containerd.start();
    for (const archive of [built.archive, built.pauseArchive]) {
      const res = containerd.ctr('images', 'import', archive);
      if (res.status !== 0) throw new Error(`ctr images import ${archive}: ${res.stderr}`);
    }
  }, 1_800_000);

  afterAll(async () => {
    await containerd.stop();
  });

  it('imports under the names the cluster uses', () => {
    expect(built.image).toBe('localhost/mail-continuity-operator:dev');
    expect(built.pauseImage).toBe('registry.k8s.io/pause:3.10');
    const names = containerd.ctr('images', 'list', '-q').stdout.split('\n');
    expect(names).toEqual(expect.arrayContaining([built.image, built.pauseImage]));
  });

  it("the Dockerfile's entrypoint, user 65532 and no NODE_EXTRA_CA_CERTS in the image", () => {
    const config = imageConfig(built.archive);
    expect(config.Entrypoint).toEqual(['/nodejs/bin/node', '/app/dist/src/cli.js']);
    expect(config.User).toBe('65532:65532');
    expect(config.Env.join('\n')).not.toMatch(/NODE_EXTRA_CA_CERTS/);
    expect(config.Env).toContain('NODE_ENV=production');
  });

  it('operator --help', () => {
    const res = containerd.run(built.image, 'mc-operator-help', [...entrypoint, 'operator', '--help']);
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    expect(res.stdout).toContain('usage: mail-continuity operator [flags]');
  });

  it('relay --help, and relay without its config file fails as it should', () => {
    const help = containerd.run(built.image, 'mc-relay-help', [...entrypoint, 'relay', '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('usage: mail-continuity relay --config FILE');
    const missing = containerd.run(built.image, 'mc-relay-noconfig', [
      ...entrypoint,
      'relay',
      '--config',
      '/nonexistent/relay.yaml',
    ]);
    expect(missing.status).toBe(2);
    expect(missing.stdout + missing.stderr).toContain('--config /nonexistent/relay.yaml: no such file');
    expect(missing.stdout + missing.stderr).not.toMatch(/^\s+at /m);
    expect(missing.stdout + missing.stderr).not.toMatch(/ERR_MODULE_NOT_FOUND|Cannot find (module|package)/);
  });

  it('runs as 65532 on a read-only root: no shell, no npm, nothing writable', () => {
    const probe = `
      const fs = require('node:fs');
      let write = 'written';
      try { fs.writeFileSync('/app/probe', 'x'); } catch (e) { write = e.code; }
      console.log(JSON.stringify({
        uid: process.getuid(), gid: process.getgid(),
        present: ['/bin/sh', '/usr/bin/sh', '/bin/bash', '/bin/dash', '/usr/bin/env', '/usr/local/bin/npm',
          '/usr/bin/apt', '/usr/bin/dpkg'].filter((f) => fs.existsSync(f)),
        owner: fs.statSync('/app/dist/src/cli.js').uid,
        write,
      }));`;
    const res = containerd.run(built.image, 'mc-probe', ['/nodejs/bin/node', '-e', probe]);
    expect(res.stderr).toBe('');
    expect(JSON.parse(res.stdout)).toEqual({ uid: 65532, gid: 65532, present: [], owner: 0, write: 'EROFS' });
  });

  it('the pause image holds until SIGTERM and exits 0', async () => {
    const id = `mc-pause-${process.pid}`;
    const run = spawn(
      'ctr',
      ['--address', containerd.socket, '-n', 'k8s.io', 'run', ...containerd.runFlags(), built.pauseImage, id],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    run.stdout.on('data', (b: Buffer) => (out += b.toString()));
    run.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((r) => run.once('exit', r));
    for (let i = 0; i < 100 && !/RUNNING/.test(containerd.ctr('tasks', 'list').stdout); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(containerd.ctr('tasks', 'list').stdout).toMatch(new RegExp(`${id}\\s+\\d+\\s+RUNNING`));
    expect(containerd.ctr('tasks', 'kill', '--signal', 'SIGTERM', id).status).toBe(0);
    expect(await exited).toBe(0);
    expect(out).toContain('Shutting down, got signal: terminated');
  });

  it('leaves nothing behind: no task, no container, no mount, no containerd', async () => {
    expect(containerd.ctr('tasks', 'list', '-q').stdout.trim()).toBe('');
    expect(containerd.ctr('containers', 'list', '-q').stdout.trim()).toBe('');
    expect(containerd.mounts()).toEqual([]);
    const dir = containerd.dir;
    await containerd.stop();
    expect(existsSync(dir)).toBe(false);
  });
});
