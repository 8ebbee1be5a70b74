// Where the relay replicas of a MailContinuity answer their admin endpoint.
//
// In a cluster: the relay Pods that have an IP, on the relay's HTTP port. A
// Pod is a relay only when the MailContinuity's own StatefulSet controls it
// (its controller ownerReference carries that StatefulSet's UID): labels alone
// would hand the admin token to any Pod that copies them. Without a kubelet (the demo, tests) the relays are
// local processes that no Pod describes: `--local-relay ns/name=URL` names them,
// the i-th URL standing for the Pod of ordinal i.
import { HTTP_PORT } from '../builders/config.js';
import { KIND } from '../../api/v1alpha1/mailcontinuity.js';
import { LABEL_INSTANCE, MANAGED_BY, LABEL_MANAGED_BY, relayPodName, relayStatefulSetName } from '../builders/common.js';
import type { KubeObject } from '../kube/types.js';
import type { Informer } from '../kube/informer.js';

/** One relay replica: its Pod's name (`<name>-relay-<ordinal>`) and admin base URL (http://ip:port). */
export interface RelayEndpoint {
  pod: string;
  url: string;
}

export interface RelayDirectory {
  /** The relays of namespace/name, by Pod name. */
  endpoints(namespace: string, name: string): RelayEndpoint[];
}

interface PodLike extends KubeObject {
  status?: { podIP?: string; phase?: string };
}

const controllerOf = (obj: KubeObject) => obj.metadata.ownerReferences?.find((r) => r.controller);

/**
 * The relay Pods of MailContinuity `name` among `pods` (one namespace): Running, with an IP, not
 * being deleted, and controlled by `statefulSet` — the StatefulSet `<name>-relay` that the
 * MailContinuity itself controls. No such StatefulSet: no relay.
 */
export function relayEndpoints(pods: KubeObject[], statefulSet: KubeObject | undefined, name: string): RelayEndpoint[] {
  const owner = statefulSet && controllerOf(statefulSet);
  if (!statefulSet?.metadata.uid || owner?.kind !== KIND || owner.name !== name) return [];
  const uid = statefulSet.metadata.uid;
  return (pods as PodLike[])
    .filter((p) => {
      const ref = controllerOf(p);
      return (
        ref?.kind === 'StatefulSet' &&
        ref.uid === uid &&
        p.metadata.labels?.[LABEL_INSTANCE] === name &&
        p.metadata.labels?.[LABEL_MANAGED_BY] === MANAGED_BY &&
        !p.metadata.deletionTimestamp &&
        p.status?.podIP &&
        p.status.phase === 'Running'
      );
    })
    .map((p) => {
      const ip = p.status!.podIP!;
      return { pod: p.metadata.name, url: `http://${ip.includes(':') ? `[${ip}]` : ip}:${HTTP_PORT}` };
    })
    .sort((a, b) => a.pod.localeCompare(b.pod));
}

export class PodDirectory implements RelayDirectory {
  constructor(
    private readonly pods: Informer<KubeObject>,
    private readonly statefulSets: Informer<KubeObject>,
  ) {}

  endpoints(namespace: string, name: string): RelayEndpoint[] {
    return relayEndpoints(this.pods.list(namespace), this.statefulSets.get(namespace, relayStatefulSetName(name)), name);
  }
}

/** `ns/name=http://127.0.0.1:9101,http://127.0.0.1:9102` entries of --local-relay. */
export class StaticDirectory implements RelayDirectory {
  private readonly map = new Map<string, string[]>();

  constructor(entries: string[]) {
    for (const entry of entries) {
      const m = /^([a-z0-9-]+)\/([a-z0-9.-]+)=(.+)$/.exec(entry);
      if (!m) throw new Error(`--local-relay: "${entry}" is not NAMESPACE/NAME=URL[,URL...]`);
      const urls = m[3]!.split(',').map((u) => u.trim().replace(/\/+$/, ''));
      for (const u of urls) {
        if (!/^https?:\/\/[^/]+$/.test(u))
          throw new Error(`--local-relay: "${u}" is not a base URL such as http://127.0.0.1:9101`);
      }
      this.map.set(`${m[1]}/${m[2]}`, [...(this.map.get(`${m[1]}/${m[2]}`) ?? []), ...urls]);
    }
  }

  endpoints(namespace: string, name: string): RelayEndpoint[] {
    return (this.map.get(`${namespace}/${name}`) ?? []).map((url, i) => ({ pod: relayPodName(name, i), url }));
  }
}
