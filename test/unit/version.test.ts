// The release version has one source, package.json; every other place that spells it out
// (the chart, the Dockerfile label, the default relay image, Argo CD's targetRevision, the
// docs' image tags and links) agrees with it: scripts/set-version.sh --check.
import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';

const version = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
const check = (cwd = '.') => spawnSync('bash', ['scripts/set-version.sh', '--check'], { cwd, encoding: 'utf8' });

describe('the version', () => {
  it('is the same in every place scripts/set-version.sh knows', () => {
    const res = check();
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
  });

  it('the chart and Argo CD name it', () => {
    const chart = YAML.parse(readFileSync('charts/mail-continuity-operator/Chart.yaml', 'utf8'));
    expect([chart.version, chart.appVersion]).toEqual([version, version]);
    const app = YAML.parse(readFileSync('deploy/argocd/application.yaml', 'utf8'));
    expect(app.spec.source.targetRevision).toBe(`v${version}`);
  });

  it('NOTES.txt takes it from the chart, never spelled out', () => {
    const notes = readFileSync('charts/mail-continuity-operator/templates/NOTES.txt', 'utf8');
    expect(notes).toContain('/raw/v{{ .Chart.AppVersion }}/');
    expect(notes).not.toMatch(/\d+\.\d+\.\d+/);
  });

  it('--check names a file that disagrees', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mc-version-'));
    try {
      for (const p of ['scripts', 'charts', 'deploy', 'package.json', 'Dockerfile', 'README.md'])
        cpSync(p, join(dir, p), { recursive: true });
      const app = join(dir, 'deploy/argocd/application.yaml');
      writeFileSync(app, readFileSync(app, 'utf8').replace(`targetRevision: v${version}`, 'targetRevision: v9.9.9'));
      const res = check(dir);
      expect(res.status).toBe(1);
      expect(res.stderr).toContain(`set-version: deploy/argocd/application.yaml says 9.9.9, not ${version}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
