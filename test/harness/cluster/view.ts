// What the cluster tests and the demo read of one MailContinuity, through
// kubectl as a user would: the object and its conditions, its Events, the
// operator's Lease, the relay pods and their PVCs, and the audit log on a
// relay's spool volume (read on the node, where the local volume lives).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import YAML from 'yaml';
import { waitFor } from '../wait.js';
import type { Cluster } from './cluster.js';

export interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  lastTransitionTime: string;
}

export interface PodInfo {
  name: string;
  uid: string;
  ip: string;
  phase: string;
  ready: boolean;
  restarts: number;
  deleting: boolean;
}

export interface KubeView {
  namespace: string;
  name: string;
  kubectl(args: string[], input?: string): string;
  get(): { metadata: { generation: number }; status?: { conditions?: Condition[]; lastFailover?: unknown; [field: string]: unknown } };
  condition(type: string): Condition | undefined;
  events(): { reason: string; type: string; message: string }[];
  /** The operator pod holding the Lease, if any (the holder identity is POD_NAME_PID). */
  leader(): string | undefined;
  apply(spec: Record<string, unknown>): void;
  relayPods(): PodInfo[];
  waitRelaysReady(replicas: number, timeoutMs: number): Promise<PodInfo[]>;
  /** The relay StatefulSet has rolled out its current spec: every replica updated and Ready. */
  waitRolledOut(timeoutMs: number): Promise<PodInfo[]>;
  /** The audit log lines of every relay (their spool volumes, read on the node), oldest first. */
  auditLog(): Promise<string[]>;
}

interface PodJson {
  metadata: { name: string; uid: string; deletionTimestamp?: string };
  status: {
    phase: string;
    podIP?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: { restartCount: number }[];
  };
}

export function podInfo(p: PodJson): PodInfo {
  return {
    name: p.metadata.name,
    uid: p.metadata.uid,
    ip: p.status.podIP ?? '',
    phase: p.status.phase,
    ready: p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    restarts: (p.status.containerStatuses ?? []).reduce((n, c) => n + c.restartCount, 0),
    deleting: !!p.metadata.deletionTimestamp,
  };
}

export function kubeView(cluster: Cluster, namespace: string, name: string): KubeView {
  const kubectl = cluster.kubectl;
  const json = <T>(args: string[]) => JSON.parse(kubectl([...args, '-o', 'json'])) as T;
  const view: KubeView = {
    namespace,
    name,
    kubectl,
    get: () => json(['-n', namespace, 'get', 'mailcontinuity', name]),
    condition: (type) => view.get().status?.conditions?.find((c) => c.type === type),
    events: () =>
      json<{ items: { reason: string; type: string; message: string }[] }>([
        '-n',
        namespace,
        'get',
        'events',
        '--field-selector',
        `involvedObject.name=${name}`,
      ]).items,
    leader() {
      try {
        const leases = json<{ items: { spec: { holderIdentity?: string } }[] }>([
          '-n',
          'mail-continuity-system',
          'get',
          'leases',
        ]).items;
        return leases.map((l) => l.spec.holderIdentity?.replace(/_\d+$/, '')).find((h) => !!h);
      } catch {
        return undefined;
      }
    },
    apply(spec) {
      const manifest = { apiVersion: 'mailcontinuity.io/v1alpha1', kind: 'MailContinuity', metadata: { name, namespace }, spec };
      kubectl(['apply', '--server-side', '-f', '-'], YAML.stringify(manifest));
    },
    relayPods: () =>
      json<{ items: PodJson[] }>(['-n', namespace, 'get', 'pods', '-l', `app.kubernetes.io/instance=${name}`])
        .items.map(podInfo)
        .sort((a, b) => a.name.localeCompare(b.name)),
    async waitRelaysReady(replicas, timeoutMs) {
      return waitFor(
        `${replicas} relay pod(s) of ${namespace}/${name} Ready with Bound PVCs`,
        () => {
          const pods = view.relayPods().filter((p) => !p.deleting);
          if (pods.length !== replicas || !pods.every((p) => p.ready)) return undefined;
          const pvcs = json<{ items: { status: { phase: string } }[] }>(['-n', namespace, 'get', 'pvc']).items;
          return pvcs.filter((c) => c.status.phase === 'Bound').length >= replicas ? pods : undefined;
        },
        timeoutMs,
        500,
      );
    },
    async waitRolledOut(timeoutMs) {
      await waitFor(
        `the StatefulSet ${namespace}/${name}-relay rolled out`,
        () => {
          const sts = json<{
            metadata: { generation: number };
            spec: { replicas: number };
            status: { observedGeneration?: number; replicas?: number; readyReplicas?: number; updatedReplicas?: number; currentRevision?: string; updateRevision?: string };
          }>(['-n', namespace, 'get', 'statefulset', `${name}-relay`]);
          const st = sts.status;
          return (
            st.observedGeneration === sts.metadata.generation &&
            st.replicas === sts.spec.replicas &&
            st.readyReplicas === sts.spec.replicas &&
            st.updatedReplicas === sts.spec.replicas &&
            st.currentRevision === st.updateRevision
          );
        },
        timeoutMs,
        500,
      );
      return view.relayPods();
    },
    async auditLog() {
      const claims = json<{ items: { metadata: { name: string }; spec: { volumeName?: string } }[] }>([
        '-n',
        namespace,
        'get',
        'pvc',
      ]).items.filter((c) => c.metadata.name.startsWith(`spool-${name}-relay-`) && c.spec.volumeName);
      const lines: string[] = [];
      for (const c of claims) {
        const path = kubectl(['get', 'pv', c.spec.volumeName!, '-o', 'jsonpath={.spec.local.path}']).trim();
        lines.push(...(await readFile(join(path, 'audit.log'), 'utf8').catch(() => '')).split('\n').filter((l) => l !== '' && !l.includes('"action":"genesis"')));
      }
      // Each line starts with {"time":"<ISO 8601>": sorting the text sorts by time.
      return lines.sort();
    },
  };
  return view;
}
