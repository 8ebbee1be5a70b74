// The product as users run it, in a real one-node cluster (kubelet, containerd,
// kube-proxy, the image built from the Dockerfile, the chart installed with
// helm): the outage timeline of `make demo`, a relay pod force-deleted while
// mail streams in, a rolling update, the operator leader killed, and helm
// uninstall. Nothing is mocked; Postfix stands in for Exchange and a strict
// emulator for Gmail. The tests run in order on one installation.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { mountsUnder } from '../harness/cluster/containerd.js';
import { bridgeExists, cniNetns, kubeChains, NODE_IP } from '../harness/cluster/network.js';
import { installProduct, OPERATOR_NAMESPACE, RELEASE, type InstalledProduct } from '../harness/cluster/product.js';
import { permanentFailures, streamMail, type SendResult } from '../harness/cluster/mail-stream.js';
import { DEMO_USER, EXPECTED_DEMO_TABLE, formatTable, runTimeline } from '../harness/demo-timeline.js';
import { swaks } from '../harness/smtp-tools.js';
import { waitFor } from '../harness/wait.js';

const demo = YAML.parse(readFileSync('examples/demo.yaml', 'utf8')) as {
  metadata: { name: string };
  spec: Record<string, Record<string, unknown>>;
};
const REPLICAS = 2;
/** examples/demo.yaml's spec with two relays, and `change` applied. */
const specWith = (change: Record<string, unknown> = {}): Record<string, unknown> => ({
  ...demo.spec,
  relay: { ...demo.spec.relay, replicas: REPLICAS },
  ...change,
});
let p: InstalledProduct;
// What the machine had before the cluster: the clean-up test compares against it.
const chainsBefore = new Set(kubeChains());
const netnsBefore = new Set(cniNetns());

beforeAll(async () => {
  p = await installProduct({
    name: demo.metadata.name,
    namespace: 'mail',
    spec: specWith(),
    domains: ['corp.example.com'],
    gmailUsers: [DEMO_USER],
    progress: (l) => process.stderr.write(`[cluster] ${l}\n`),
  });
}, 1_200_000);

afterAll(async () => {
  await p?.stop();
}, 180_000);

/** Every accepted message of `results` is at Exchange (at least once); returns how many were accepted. */
async function allAcceptedArrive(results: SendResult[]): Promise<number> {
  const accepted = results.filter((r) => r.accepted).map((r) => r.id);
  await p.postfix.waitFor(
    (m) => accepted.every((id) => m.some((x) => x.messageId === id)),
    120_000,
    `${accepted.length} accepted messages at Exchange`,
  );
  return accepted.length;
}

/** Mail streams to the relay Service while `disrupt` runs; the stream ends even when `disrupt` fails. */
async function whileMailStreams(prefix: string, disrupt: (results: SendResult[]) => Promise<void>): Promise<SendResult[]> {
  const stream = streamMail({ smtp: p.smtp, to: DEMO_USER, prefix });
  try {
    await disrupt(stream.results);
  } finally {
    await stream.stop();
  }
  return stream.results;
}

const acceptedCount = (results: SendResult[]) => results.filter((r) => r.accepted).length;


describe('installed with helm, a MailContinuity applied with kubectl', () => {
  it('runs the operator with one leader and the relays as restricted pods on Bound PVCs', () => {
    const pods = JSON.parse(p.kubectl(['-n', OPERATOR_NAMESPACE, 'get', 'pods', '-o', 'json'])) as {
      items: { metadata: { name: string }; status: { phase: string } }[];
    };
    expect(pods.items.map((i) => i.status.phase)).toEqual(['Running', 'Running']);
    expect(pods.items.map((i) => i.metadata.name)).toContain(p.leader());

    const relays = p.relayPods();
    expect(relays.map((r) => [r.name, r.phase, r.ready])).toEqual([
      ['corp-relay-0', 'Running', true],
      ['corp-relay-1', 'Running', true],
    ]);
    const sts = JSON.parse(p.kubectl(['-n', 'mail', 'get', 'pod', 'corp-relay-0', '-o', 'json'])) as {
      spec: { containers: { image: string; securityContext: Record<string, unknown> }[]; securityContext: Record<string, unknown> };
    };
    expect(sts.spec.containers[0]!.image).toBe(p.image);
    expect(sts.spec.containers[0]!.securityContext).toMatchObject({ readOnlyRootFilesystem: true, runAsNonRoot: true });
    expect(sts.spec.securityContext).toMatchObject({ runAsUser: 65532 });
    const pvcs = p.kubectl(['-n', 'mail', 'get', 'pvc', '-o', 'jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}']);
    expect(pvcs.trim().split(' ').sort()).toEqual(['spool-corp-relay-0=Bound', 'spool-corp-relay-1=Bound']);
    expect(p.condition('Ready')?.status).toBe('True');
    // kubectl logs reaches the kubelet through the apiserver, as a user reads a relay's log.
    expect(p.kubectl(['-n', 'mail', 'logs', 'corp-relay-0'])).toMatch(/"event":"ready"/);
    console.log(`first steps (s): ${JSON.stringify(p.timings)}`);
  });

  it('goes through the demo outage timeline: every message at Exchange once, outage mail at Gmail, the confidential one excluded', async () => {
    const lines: string[] = [];
    const table = await runTimeline(
      { ...p, note: '' },
      (l) => lines.push(l),
      (l) => lines.push(l),
    );
    console.log(formatTable(table));
    expect({ ...table, phases: undefined }).toEqual({ ...EXPECTED_DEMO_TABLE, phases: undefined });
  });
});

describe('relay pods come and go', () => {
  it('a relay pod force-deleted while mail streams in comes back on the same PVC, and every 250 arrives', async () => {
    const pvcBefore = p.kubectl(['-n', 'mail', 'get', 'pvc', 'spool-corp-relay-0', '-o', 'jsonpath={.spec.volumeName}']);
    const before = p.relayPods().find((r) => r.name === 'corp-relay-0')!;
    let atLeast = 0;
    const results = await whileMailStreams('kill', async (sent) => {
      await waitFor('some mail accepted before the kill', () => acceptedCount(sent) >= 5, 60_000);
      p.kubectl(['-n', 'mail', 'delete', 'pod', 'corp-relay-0', '--grace-period=0', '--force']);
      await waitFor(
        'corp-relay-0 back (a new pod) and Ready',
        () => p.relayPods().find((r) => r.name === 'corp-relay-0' && r.uid !== before.uid && r.ready),
        180_000,
        500,
      );
      atLeast = acceptedCount(sent) + 10;
      await waitFor('more mail accepted after the pod came back', () => acceptedCount(sent) >= atLeast, 60_000);
    });
    const pvcAfter = p.kubectl(['-n', 'mail', 'get', 'pvc', 'spool-corp-relay-0', '-o', 'jsonpath={.spec.volumeName}']);
    expect(pvcAfter).toBe(pvcBefore);
    expect(permanentFailures(results)).toEqual([]);
    expect(await allAcceptedArrive(results)).toBeGreaterThanOrEqual(atLeast);
  });

  it('a spec change (here: the Service becomes a NodePort) rolls the relay pods one at a time, and no accepted message is lost', async () => {
    const before = new Map(p.relayPods().map((r) => [r.name, r.uid]));
    let mostDown = 0;
    const results = await whileMailStreams('roll', async () => {
      p.apply(
        specWith({
          policy: { ...demo.spec.policy, maxMessageBytes: 20 * 1024 * 1024 },
          relay: { ...demo.spec.relay, replicas: REPLICAS, service: { type: 'NodePort' } },
        }),
      );
      await waitFor(
        'both relay pods replaced and Ready',
        () => {
          const pods = p.relayPods();
          mostDown = Math.max(mostDown, REPLICAS - pods.filter((r) => r.ready && !r.deleting).length);
          return pods.length === REPLICAS && pods.every((r) => r.ready && !r.deleting && before.get(r.name) !== r.uid);
        },
        300_000,
        250,
      );
    });
    expect(mostDown).toBe(1);
    expect(permanentFailures(results)).toEqual([]);
    expect(await allAcceptedArrive(results)).toBeGreaterThan(0);
    // The NodePort on the node's address reaches a relay too (externalTrafficPolicy Local: the client address is kept).
    const nodePort = Number(p.kubectl(['-n', 'mail', 'get', 'service', 'corp-relay', '-o', 'jsonpath={.spec.ports[0].nodePort}']));
    const r = await swaks({ host: NODE_IP, port: nodePort, to: DEMO_USER, headers: ['Message-ID: <nodeport-1@partner.example.net>'] });
    expect({ code: r.code, transcript: r.transcript }).toMatchObject({ code: 0 });
    await p.postfix.waitFor((m) => m.some((x) => x.messageId === 'nodeport-1@partner.example.net'), 60_000, 'the NodePort message at Exchange');
  });
});

describe('the operator', () => {
  it('killed: the standby takes the Lease and carries on; the relays deliver meanwhile', async () => {
    const leader = p.leader()!;
    let next: string | undefined;
    const results = await whileMailStreams('leader', async () => {
      p.kubectl(['-n', OPERATOR_NAMESPACE, 'delete', 'pod', leader, '--grace-period=0', '--force']);
      next = await waitFor('a new leader', () => (p.leader() !== leader ? p.leader() : undefined), 120_000, 500);
      // The new leader reconciles: a spec change reaches the relay ConfigMap.
      p.apply(specWith({ recovery: { maxMessagesPerSecond: 25 } }));
      await waitFor(
        'the new leader to render the change',
        () =>
          p
            .kubectl(['-n', 'mail', 'get', 'configmap', 'corp-relay-config', '-o', 'jsonpath={.data.relay\\.yaml}'])
            .includes('maxMessagesPerSecond: 25'),
        120_000,
        500,
      );
    });
    expect(next).not.toBe(leader);
    expect(permanentFailures(results)).toEqual([]);
    expect(await allAcceptedArrive(results)).toBeGreaterThan(0);
  });

  it('scaling the relays down drains the removed relay first: its queued mail is delivered, not stranded', async () => {
    const sts = () => Number(p.kubectl(['-n', 'mail', 'get', 'statefulset', 'corp-relay', '-o', 'jsonpath={.spec.replicas}']));
    // The spec change of the test before rolls the relays: start from both on the current spec.
    const relay1 = (await p.waitRolledOut(180_000)).find((r) => r.name === 'corp-relay-1')!;
    await p.postfix.stop();
    // Mail straight to corp-relay-1 (its pod IP) while Exchange is down: it holds it.
    const held: string[] = [];
    for (let i = 1; i <= 5; i++) {
      const id = `drain-${i}@partner.example.net`;
      const r = await swaks({ host: relay1.ip, port: 2525, to: DEMO_USER, headers: [`Message-ID: <${id}>`] });
      expect({ code: r.code, transcript: r.transcript }).toMatchObject({ code: 0 });
      held.push(id);
    }
    // The spec as the test before left it, with one replica fewer: the relay config does not change.
    p.apply(specWith({ recovery: { maxMessagesPerSecond: 25 }, relay: { ...demo.spec.relay, replicas: 1 } }));
    const draining = await waitFor(
      'Reconciling=True DrainingRelays naming corp-relay-1',
      () => {
        const c = p.condition('Reconciling');
        return c?.status === 'True' && c.reason === 'DrainingRelays' && c.message.includes('corp-relay-1 holds') ? c : undefined;
      },
      60_000,
      250,
    );
    // Waiting for the primary; once the failover is declared, for Gmail too.
    expect(draining.message).toMatch(
      /^scaling relays 2 -> 1: corp-relay-1 holds (\d+ messages? \(waiting for the primary\)|messages waiting for the primary \(\d+\))/,
    );
    expect(sts()).toBe(2);
    await waitFor('the RelayDrainStarted event', () => p.events().some((e) => e.reason === 'RelayDrainStarted'), 30_000);
    await waitFor('corp-relay-1 out of the Service (not Ready)', () => !p.relayPods().find((r) => r.name === 'corp-relay-1')?.ready, 60_000, 250);
    expect(sts()).toBe(2);

    await p.postfix.start();
    await waitFor('the RelayDrainCompleted event', () => p.events().some((e) => e.reason === 'RelayDrainCompleted'), 120_000, 500);
    await waitFor('the StatefulSet at 1 replica and corp-relay-1 gone', () => sts() === 1 && p.relayPods().length === 1, 120_000, 500);
    await p.postfix.waitFor((m) => held.every((id) => m.some((x) => x.messageId === id)), 60_000, 'the drained mail at Exchange');
    await waitFor('Ready=True again', () => p.condition('Ready')?.status === 'True', 60_000, 500);
  });

  it('helm uninstall keeps the CRD, the MailContinuity and the spool PVCs', () => {
    p.helm(['uninstall', RELEASE, '--namespace', OPERATOR_NAMESPACE, '--wait']);
    expect(p.kubectl(['get', 'crd', 'mailcontinuities.mailcontinuity.io', '-o', 'name']).trim()).toBe(
      'customresourcedefinition.apiextensions.k8s.io/mailcontinuities.mailcontinuity.io',
    );
    expect(p.kubectl(['-n', 'mail', 'get', 'mailcontinuity', 'corp', '-o', 'name']).trim()).toBe('mailcontinuity.mailcontinuity.io/corp');
    const pvcs = p.kubectl(['-n', 'mail', 'get', 'pvc', '-o', 'name']).trim().split('\n').sort();
    // corp-relay-1's claim outlives the scale-down (whenScaled: Retain), empty.
    expect(pvcs).toEqual(['persistentvolumeclaim/spool-corp-relay-0', 'persistentvolumeclaim/spool-corp-relay-1']);
  });
});

describe('clean-up', () => {
  it('stopping the cluster leaves no container, shim, mount, netns, iptables chain, bridge or cgroup behind', async () => {
    const dir = p.cluster.dir;
    const socket = p.cluster.containerd.socket;
    await p.stop();
    expect(bridgeExists()).toBe(false);
    expect(kubeChains().filter((c) => !chainsBefore.has(c))).toEqual([]);
    expect(cniNetns().filter((n) => !netnsBefore.has(n))).toEqual([]);
    expect(mountsUnder(dir)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    const ps = execFileSync('ps', ['-eo', 'args='], { encoding: 'utf8' });
    expect(ps.split('\n').filter((l) => l.includes(socket) || l.includes(dir))).toEqual([]);
    expect(readdirSync('/sys/fs/cgroup').filter((h) => existsSync(join('/sys/fs/cgroup', h, 'kubepods')))).toEqual([]);
  });
});
