// The command blocks of README.md and docs/*.md run as written, so the docs cannot rot.
// A block runs when the line before its ```sh fence is a marker (docs/README.md):
//   <!-- doc-test: run -->        a new session: a fresh kube-apiserver + etcd
//   <!-- doc-test: continue -->   the same session as the block before it in the file
// Each block runs with `bash -euo pipefail` in a directory holding the repository's files
// (charts/, crds/, deploy/, examples/) and a stand-in sa-key.json, with KUBECONFIG pointing at
// the session's apiserver and the harness's kubectl and helm first on PATH. No kubelet: blocks
// install, apply and get; they never wait for pods.
import { afterEach, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { binDir, startControlPlane, type ControlPlane } from '../harness/controlplane.js';

const MARKER = /^<!-- doc-test: (run|continue) -->$/;
const REPO = resolve('.');

interface Block {
  file: string;
  line: number;
  script: string;
}

/** The marked blocks of one Markdown file, grouped into sessions. */
function sessions(file: string, text: string): Block[][] {
  const lines = text.split('\n');
  const out: Block[][] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = MARKER.exec(lines[i]!.trim());
    if (!m) continue;
    if (lines[i + 1]?.trim() !== '```sh')
      throw new Error(`${file}:${i + 1}: a doc-test marker must precede a \`\`\`sh fence`);
    const end = lines.findIndex((l, j) => j > i + 1 && l.trim() === '```');
    if (end < 0) throw new Error(`${file}:${i + 2}: the block never closes`);
    const block = { file, line: i + 2, script: lines.slice(i + 2, end).join('\n') };
    if (m[1] === 'continue') {
      if (out.length === 0) throw new Error(`${file}:${i + 1}: "continue" with no "run" block before it`);
      out[out.length - 1]!.push(block);
    } else out.push([block]);
    i = end;
  }
  return out;
}

const files = [
  'README.md',
  ...readdirSync('docs')
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const all = files.flatMap((f) => sessions(f, readFileSync(f, 'utf8')));

/** A working directory like a clone: the repository's files (links) and a stand-in Gmail key. */
function workdir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mc-doc-test-'));
  for (const entry of ['charts', 'crds', 'deploy', 'examples', 'docs'])
    symlinkSync(join(REPO, entry), join(dir, entry));
  writeFileSync(
    join(dir, 'sa-key.json'),
    JSON.stringify({ type: 'service_account', note: 'stand-in for the docs test' }),
  );
  mkdirSync(join(dir, '.helm'));
  return dir;
}

let cp: ControlPlane | undefined;
let dir: string | undefined;
afterEach(async () => {
  await cp?.stop();
  cp = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('docs command blocks', () => {
  it('the docs mark their install and quick-start blocks', () => {
    const where = all.map((s) => s[0]!.file);
    expect(where).toContain('docs/install.md');
    expect(all.flat().length).toBeGreaterThanOrEqual(5);
  });

  it.each(all.map((s) => [`${s[0]!.file}:${s[0]!.line}`, s] as const))('%s runs as written', async (_name, blocks) => {
    cp = await startControlPlane();
    dir = workdir();
    const env = {
      ...process.env,
      PATH: `${binDir()}:${process.env.PATH}`,
      KUBECONFIG: cp.kubeconfig,
      HELM_CACHE_HOME: join(dir, '.helm/cache'),
      HELM_CONFIG_HOME: join(dir, '.helm/config'),
      HELM_DATA_HOME: join(dir, '.helm/data'),
    };
    for (const b of blocks) {
      const res = spawnSync('bash', ['-euo', 'pipefail', '-c', b.script], {
        cwd: dir,
        env,
        encoding: 'utf8',
        timeout: 180_000,
      });
      if (res.status !== 0) {
        throw new Error(
          `${b.file}:${b.line} failed (exit ${res.status}):\n${b.script}\n--- stdout\n${res.stdout}\n--- stderr\n${res.stderr}`,
        );
      }
    }
  });
});
