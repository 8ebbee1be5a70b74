// `make release` as a maintainer runs it (scripts/release.sh): the image as an OCI archive,
// the packaged chart, install.yaml pinned to the image digest, the CRDs and SHA256SUMS, all of
// one version (package.json's) and one digest. The image build is scripts/build-image.sh's,
// cached by its inputs: minutes when src/ changed, seconds otherwise.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';

const REPOSITORY = 'ghcr.io/mail-continuity/mail-continuity-operator';
const version = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
let out: string;
let release: { version: string; image: string; digest: string };

/** A file of the OCI archive or the chart archive, as text. */
const fromTar = (archive: string, path: string) => {
  const res = spawnSync('tar', ['-xOf', join(out, archive), path], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (res.status !== 0) throw new Error(`tar ${archive} ${path}: ${res.stderr}`);
  return res.stdout;
};
const docs = (text: string) =>
  YAML.parseAllDocuments(text)
    .map((d) => d.toJS())
    .filter(Boolean);

beforeAll(() => {
  out = mkdtempSync(join(tmpdir(), 'mc-release-'));
  // A try-out of the working tree: the test does not require everything to be committed.
  const res = spawnSync('make', ['release'], {
    encoding: 'utf8',
    timeout: 20 * 60_000,
    env: { ...process.env, RELEASE_DIR: out, RELEASE_ALLOW_DIRTY: '1' },
  });
  if (res.status !== 0)
    throw new Error(`make release failed (${res.status ?? res.signal}):\n${res.stderr.slice(-4000)}`);
  release = JSON.parse(readFileSync(join(out, 'release.json'), 'utf8'));
}, 21 * 60_000);

afterAll(() => {
  if (out) rmSync(out, { recursive: true, force: true });
});

describe('make release', () => {
  it('writes the image, the chart, install.yaml, the CRDs, release.json and SHA256SUMS of one version', () => {
    expect(readdirSync(out).sort()).toEqual(
      [
        'SHA256SUMS',
        'crds',
        'install.yaml',
        `mail-continuity-operator-${version}.oci.tar`,
        `mail-continuity-operator-${version}.tgz`,
        'release.json',
      ].sort(),
    );
    expect(release).toEqual({
      version,
      image: `${REPOSITORY}:${version}`,
      digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
    });
    const check = spawnSync('sha256sum', ['-c', 'SHA256SUMS'], { cwd: out, encoding: 'utf8' });
    expect(check.status).toBe(0);
    expect(check.stdout.trim().split('\n')).toHaveLength(5);
  });

  it('the OCI archive holds one image: its manifest has the digest, its name and label the version', () => {
    const index = JSON.parse(fromTar(`mail-continuity-operator-${version}.oci.tar`, 'index.json'));
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0].digest).toBe(release.digest);
    expect(index.manifests[0].annotations['org.opencontainers.image.ref.name']).toBe(`${REPOSITORY}:${version}`);
    const blob = (d: string) => fromTar(`mail-continuity-operator-${version}.oci.tar`, `blobs/sha256/${d.slice(7)}`);
    const manifest = JSON.parse(blob(release.digest));
    const config = JSON.parse(blob(manifest.config.digest));
    expect(config.config.Labels['org.opencontainers.image.version']).toBe(version);
    expect(config.config.Entrypoint).toEqual(['/nodejs/bin/node', '/app/dist/src/cli.js']);
  });

  it('the chart is packaged with the version as version and appVersion', () => {
    const chart = YAML.parse(fromTar(`mail-continuity-operator-${version}.tgz`, 'mail-continuity-operator/Chart.yaml'));
    expect([chart.version, chart.appVersion]).toEqual([version, version]);
  });

  it('install.yaml is deploy/install.yaml with every image reference pinned to the digest', () => {
    const text = readFileSync(join(out, 'install.yaml'), 'utf8');
    const pinned = `${REPOSITORY}@${release.digest}`;
    const deploy = docs(text).find((o) => o.kind === 'Deployment');
    expect(deploy.spec.template.spec.containers[0].image).toBe(pinned);
    expect(deploy.spec.template.spec.containers[0].args).toContain(`--relay-image=${pinned}`);
    const expected = readFileSync('deploy/install.yaml', 'utf8').replaceAll(`${REPOSITORY}:${version}`, pinned);
    expect(docs(text)).toEqual(docs(expected));
  });

  it('the CRDs are crds/', () => {
    for (const f of readdirSync('crds')) {
      expect(existsSync(join(out, 'crds', f))).toBe(true);
      expect(readFileSync(join(out, 'crds', f), 'utf8')).toBe(readFileSync(join('crds', f), 'utf8'));
    }
  });
});
