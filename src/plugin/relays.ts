// How the plugin reaches a MailContinuity and its relays: through the
// apiserver only, with the user's kubeconfig, so what they may do is what
// their RBAC allows (get mailcontinuities; get the relays' admin Secret; list
// pods; get pods/proxy). A relay's admin API is called through the pod
// proxy (/api/v1/namespaces/NS/pods/POD:PORT/proxy/...), never at a guessed
// address; the relay's token goes in X-Mail-Continuity-Token, as the
// Authorization header is the apiserver's.
import { HTTP_PORT } from '../operator/builders/config.js';
import { LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY } from '../operator/builders/common.js';
import { KubeApiError, type KubeClient, type KubeObject } from '../operator/kube/client.js';
import { MAILCONTINUITIES, PODS, SECRETS } from '../operator/kube/resources.js';
import { RELAY_TOKEN_HEADER } from '../relay/control/queue-admin.js';
import type { MailContinuity } from '../api/v1alpha1/mailcontinuity.js';
import { CliError } from '../lib/cli-args.js';

export type MC = MailContinuity & KubeObject;

interface PodLike extends KubeObject {
  spec?: { containers?: { ports?: { name?: string; containerPort: number }[] }[] };
  status?: { phase?: string; podIP?: string };
}

/** A Forbidden or NotFound from the apiserver, as one line that says what is missing. */
export function explain(err: unknown, what: string): Error {
  if (err instanceof KubeApiError && err.code === 403) {
    const said = (err.status as { message?: string } | undefined)?.message ?? err.message;
    return new CliError(`forbidden: ${what}: ${said} (ask for that permission in the namespace's RBAC)`, 4);
  }
  if (err instanceof KubeApiError && err.code === 404) return new CliError(`not found: ${what}`, 3);
  return err instanceof Error ? err : new Error(String(err));
}

export async function getMc(client: KubeClient, ns: string, name: string): Promise<MC> {
  try {
    return await client.get<MC>(MAILCONTINUITIES, ns, name);
  } catch (err) {
    throw explain(err, `get mailcontinuities ${ns}/${name}`);
  }
}

export async function listMcs(client: KubeClient, ns: string): Promise<MC[]> {
  try {
    return (await client.list<MC>(MAILCONTINUITIES, ns)).items;
  } catch (err) {
    throw explain(err, `list mailcontinuities in namespace ${ns}`);
  }
}

export interface RelayPod {
  name: string;
  port: number;
  ready: boolean;
}

/** The relay Pods of `name`, with the port of their admin API (the container port named http). */
export async function relayPods(client: KubeClient, ns: string, name: string): Promise<RelayPod[]> {
  let pods: PodLike[];
  try {
    pods = (await client.list<PodLike>(PODS, ns, `${LABEL_INSTANCE}=${name},${LABEL_MANAGED_BY}=${MANAGED_BY}`)).items;
  } catch (err) {
    throw explain(err, `list pods in namespace ${ns}`);
  }
  return pods
    .map((p) => ({
      name: p.metadata.name,
      port: p.spec?.containers?.flatMap((c) => c.ports ?? []).find((x) => x.name === 'http')?.containerPort ?? HTTP_PORT,
      ready: p.status?.phase === 'Running' && Boolean(p.status.podIP),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** The relays' admin token, from the Secret the operator keeps for `name`. */
export async function relayToken(client: KubeClient, ns: string, name: string): Promise<string> {
  const secret = `${name}-relay-admin`;
  let obj: KubeObject & { data?: Record<string, string> };
  try {
    obj = await client.get(SECRETS, ns, secret);
  } catch (err) {
    throw explain(err, `get secrets ${ns}/${secret} (the relays' admin token)`);
  }
  const token = obj.data?.token;
  if (!token) throw new CliError(`Secret ${ns}/${secret} has no key "token": the operator has not written it yet`);
  return Buffer.from(token, 'base64').toString('utf8').trim();
}

/** GET/POST/DELETE on one relay's admin API through the apiserver's pod proxy. */
export async function relayCall<T>(client: KubeClient, ns: string, pod: RelayPod, token: string, method: string, path: string, body?: unknown, actor?: string): Promise<T> {
  const proxy = `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(pod.name)}:${pod.port}/proxy${path}`;
  try {
    return await client.request<T>(method, proxy, body, 'application/json', { [RELAY_TOKEN_HEADER]: token, ...(actor ? { 'x-mail-continuity-actor': actor } : {}) });
  } catch (err) {
    // The apiserver authorizes a proxied GET as get pods/proxy, other methods as create, update or delete.
    const verb = ({ GET: 'get', POST: 'create', PUT: 'update', DELETE: 'delete' } as Record<string, string>)[method] ?? method.toLowerCase();
    throw explain(err, `${verb} pods/proxy ${ns}/${pod.name} (${method} ${path})`);
  }
}
