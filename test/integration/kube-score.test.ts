// kube-score, the manifest linter users run, over the chart as helm renders it
// and over the children the operator builds for each example: every finding is
// waived in test/kube-score-waivers.yaml with a reason, and every waiver still
// matches a finding (a fixed finding takes its waiver with it).
import { beforeAll, describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { kubeScore, renderChart, renderExampleChildren, score, type Finding } from '../harness/kube-score.js';

interface Waiver {
  check: string;
  objects: string;
  comment: string;
  reason: string;
}

const waivers = YAML.parse(readFileSync('test/kube-score-waivers.yaml', 'utf8')) as Waiver[];
const waives = (w: Waiver, f: Finding) =>
  w.check === f.check && new RegExp(w.objects).test(f.object) && f.comments.every((c) => new RegExp(w.comment).test(c));

let findings: Finding[];

beforeAll(() => {
  const binary = kubeScore();
  findings = [...score(renderChart(), binary), ...score(renderExampleChildren(), binary)];
}, 600_000);

describe('kube-score', () => {
  it('scores the chart and the relay children of every example', () => {
    const relays = new Set(findings.filter((f) => f.object.startsWith('StatefulSet/')).map((f) => f.object));
    expect([...relays].sort()).toEqual([
      'StatefulSet/mail/corp-dual-delivery-relay',
      'StatefulSet/mail/corp-failover-only-relay',
      'StatefulSet/mail/corp-internal-ca-relay',
      'StatefulSet/mail/corp-patching-relay',
      'StatefulSet/mail/corp-relay',
    ]);
  });

  it('finds nothing that is not waived with a reason', () => {
    expect(findings.filter((f) => !waivers.some((w) => waives(w, f)))).toEqual([]);
  });

  it('has no stale waiver, and a reason for each', () => {
    for (const w of waivers) {
      expect([w.check, w.reason?.length > 40]).toEqual([w.check, true]);
      expect([w.check, w.objects, findings.some((f) => waives(w, f))]).toEqual([w.check, w.objects, true]);
    }
  });

  it('flags no missing host anti-affinity and no missing ephemeral storage of a relay with a PVC spool', () => {
    expect(findings.filter((f) => f.check === 'statefulset-has-host-podantiaffinity')).toEqual([]);
    expect(
      findings.filter((f) => f.check.startsWith('container-ephemeral-storage') && !f.object.endsWith('corp-patching-relay')),
    ).toEqual([]);
  });
});
