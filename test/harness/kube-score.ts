// kube-score (the manifest linter users run) over what the product puts in a
// cluster: the chart as `helm template` renders it and the children the
// operator builds for each example MailContinuity. Installed by
// test/harness/build-kube-score.sh (go install, cached outside the clone).
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { MailContinuitySpec, type MailContinuity } from '../../src/api/v1alpha1/mailcontinuity.js';
import { buildChildren } from '../../src/operator/builders/index.js';
import { binDir } from './controlplane.js';

export interface Finding {
  /** Kind/namespace/name of the object. */
  object: string;
  /** kube-score's check id, e.g. "container-resources". */
  check: string;
  grade: 'WARNING' | 'CRITICAL';
  /** kube-score's summaries of what it saw. */
  comments: string[];
}

/** The kube-score binary (installed on first use). */
export function kubeScore(): string {
  return execFileSync('test/harness/build-kube-score.sh', { encoding: 'utf8' }).trim();
}

/** The chart with its default values, as `helm template` renders it for the Kubernetes version the harness builds. */
export function renderChart(): string {
  const kube = /^\s*k8s\.io\/kubernetes\s+(\S+)/m.exec(readFileSync('test/harness/go.mod', 'utf8'))![1]!;
  return execFileSync(
    join(binDir(), 'helm'),
    ['template', 'mail-continuity-operator', 'charts/mail-continuity-operator', '--namespace', 'mail-continuity-system', '--kube-version', kube],
    { encoding: 'utf8', maxBuffer: 64 << 20 },
  );
}

/** The children the operator builds for every MailContinuity in examples/, as YAML documents. */
export function renderExampleChildren(image = 'ghcr.io/mail-continuity/mail-continuity-operator:0.1.0'): string {
  const docs: string[] = [];
  for (const file of readdirSync('examples').filter((f) => f.endsWith('.yaml')).sort()) {
    for (const doc of YAML.parseAllDocuments(readFileSync(join('examples', file), 'utf8'))) {
      const o = doc.toJSON() as MailContinuity | null;
      if (o?.kind !== 'MailContinuity') continue;
      const mc: MailContinuity = {
        ...o,
        metadata: { ...o.metadata, namespace: o.metadata.namespace ?? 'mail', uid: `uid-${o.metadata.name}` },
        spec: MailContinuitySpec.parse(o.spec),
      };
      for (const child of buildChildren(mc, { defaultImage: image, adminToken: 'token' })) docs.push(YAML.stringify(child));
    }
  }
  return docs.join('---\n');
}

const GRADES: Record<number, Finding['grade'] | undefined> = { 1: 'CRITICAL', 5: 'WARNING' };

/** Runs `kube-score score` over the manifests; returns every check graded WARNING or CRITICAL (skipped ones are not). */
export function score(manifests: string, binary = kubeScore()): Finding[] {
  const dir = mkdtempSync(join(tmpdir(), 'kube-score-'));
  try {
    const file = join(dir, 'manifests.yaml');
    writeFileSync(file, manifests);
    // Exit 1 means "something scored critical": the findings say what.
    const run = spawnSync(binary, ['score', '--output-format', 'json', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (run.status !== 0 && run.status !== 1) throw new Error(`kube-score failed (${run.status}): ${run.stderr}`);
    const objects = JSON.parse(run.stdout) as {
      object_name: string;
      type_meta: { kind: string };
      checks: { check: { id: string }; grade: number; skipped: boolean; comments: { summary: string }[] | null }[];
    }[];
    return objects.flatMap((o) =>
      o.checks
        .filter((c) => !c.skipped && GRADES[c.grade])
        .map((c) => ({
          object: `${o.type_meta.kind}/${o.object_name.split('/').slice(-2).join('/')}`,
          check: c.check.id,
          grade: GRADES[c.grade]!,
          comments: (c.comments ?? []).map((x) => x.summary),
        })),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
