// A small raw-JSON Kubernetes client over node:https. The generated
// client-node APIs turn objects into typed models, which drops fields they do
// not know (x-kubernetes-* extensions, new fields); an operator that applies
// whole objects with server-side apply wants the JSON as it is. Auth and TLS
// come from client-node's KubeConfig, so kubeconfig files, in-cluster service
// account tokens and exec plugins all work.
import { KubeConfig } from '@kubernetes/client-node';
import { Agent, request as httpsRequest, type RequestOptions } from 'node:https';
import { request as httpRequest, Agent as HttpAgent, type IncomingMessage } from 'node:http';
import { createInterface } from 'node:readline';
import type { KubeList, KubeObject, ObjectMeta, OwnerReference, ResourceType, WatchEvent } from './types.js';

export type { KubeList, KubeObject, ObjectMeta, OwnerReference, ResourceType, WatchEvent };

/** An error answer of the apiserver: `code` is the HTTP status, `status` the Status object. */
export class KubeApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly status?: unknown,
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

export const isNotFound = (err: unknown) => err instanceof KubeApiError && err.code === 404;
export const isConflict = (err: unknown) => err instanceof KubeApiError && err.code === 409;

export function resourcePath(type: ResourceType, namespace?: string, name?: string, subresource?: string): string {
  const base = type.apiVersion.includes('/') ? `/apis/${type.apiVersion}` : `/api/${type.apiVersion}`;
  let path = base;
  if (type.namespaced && namespace) path += `/namespaces/${encodeURIComponent(namespace)}`;
  path += `/${type.resource}`;
  if (name) path += `/${encodeURIComponent(name)}`;
  if (subresource) path += `/${subresource}`;
  return path;
}

export type RequestHook = (verb: string, resource: string) => void;

/**
 * The verb and resource of an API path, as the request metric labels them: the resource type and
 * subresource (`statefulsets`, `mailcontinuities/status`), never an object's name, so the number
 * of series stays that of the kinds, not of the objects.
 */
export function requestLabels(method: string, path: string): { verb: string; resource: string } {
  const parts = path.split('?')[0]!.split('/').filter(Boolean);
  let rest = parts[0] === 'api' ? parts.slice(2) : parts.slice(3); // past /api/v1 or /apis/group/version
  if (rest[0] === 'namespaces' && rest.length > 2) rest = rest.slice(2);
  const [resource = 'unknown', name, sub] = rest;
  const verb = method === 'GET' ? (name !== undefined ? 'get' : 'list') : method.toLowerCase();
  return { verb, resource: sub ? `${resource}/${sub}` : resource };
}

/** What a metadata-only list or watch asks for (the apiserver's PartialObjectMetadata). */
const METADATA_LIST = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1';
const METADATA_OBJECT = 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1';

export class KubeClient {
  private agent: Agent | HttpAgent | undefined;
  private readonly server: URL;

  constructor(
    readonly kubeConfig: KubeConfig,
    private readonly onRequest: RequestHook = () => {},
  ) {
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    this.server = new URL(cluster.server);
  }

  static fromFile(file?: string, onRequest?: RequestHook): KubeClient {
    const kc = new KubeConfig();
    if (file) kc.loadFromFile(file);
    else kc.loadFromDefault();
    return new KubeClient(kc, onRequest);
  }

  private async options(method: string, path: string, headers: Record<string, string>): Promise<RequestOptions> {
    const opts: RequestOptions = {
      method,
      protocol: this.server.protocol,
      hostname: this.server.hostname.replace(/^\[|\]$/g, ''),
      port: this.server.port || (this.server.protocol === 'https:' ? 443 : 80),
      path: this.server.pathname.replace(/\/$/, '') + path,
      headers: { Accept: 'application/json', ...headers },
    };
    await this.kubeConfig.applyToHTTPSOptions(opts);
    if (!opts.agent) {
      // One keep-alive agent for all requests: the TLS material is the same every time.
      this.agent ??=
        this.server.protocol === 'https:'
          ? new Agent({
              keepAlive: true,
              maxSockets: 32,
              ca: opts.ca,
              cert: opts.cert,
              key: opts.key,
              rejectUnauthorized: opts.rejectUnauthorized,
            })
          : new HttpAgent({ keepAlive: true, maxSockets: 32 });
      opts.agent = this.agent;
    }
    return opts;
  }

  private async send(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
    signal?: AbortSignal,
    extraHeaders: Record<string, string> = {},
  ): Promise<IncomingMessage> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const headers: Record<string, string> = { ...extraHeaders, ...(payload !== undefined ? { 'Content-Type': contentType } : {}) };
    const opts = await this.options(method, path, headers);
    const send = this.server.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send({ ...opts, signal }, resolve);
      req.on('error', reject);
      if (payload !== undefined) req.write(payload);
      req.end();
    });
  }

  /** `headers`: extra request headers (e.g. for a backend behind the apiserver's proxy). */
  async request<T>(method: string, path: string, body?: unknown, contentType?: string, headers?: Record<string, string>): Promise<T> {
    const { verb, resource } = requestLabels(method, path);
    this.onRequest(verb, resource);
    const res = await this.send(method, path, body, contentType, undefined, headers);
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return (text ? JSON.parse(text) : undefined) as T;
    let parsed: { message?: string; reason?: string } | undefined;
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      parsed = undefined;
    }
    throw new KubeApiError(
      status,
      parsed?.reason ?? 'Unknown',
      `${method} ${path}: ${status} ${parsed?.message ?? text.slice(0, 300)}`,
      parsed,
    );
  }

  get<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string): Promise<T> {
    return this.request<T>('GET', resourcePath(type, namespace, name));
  }

  /**
   * One list. `page`: at most `limit` items from `continue` on (the answer's metadata.continue
   * names the next page); `metadataOnly`: PartialObjectMetadata items (names, versions, labels: no
   * data, no spec), as a metadata informer needs them.
   */
  list<T extends KubeObject>(
    type: ResourceType,
    namespace?: string,
    labelSelector?: string,
    page: { limit?: number; continue?: string; metadataOnly?: boolean } = {},
  ): Promise<KubeList<T>> {
    const q = new URLSearchParams();
    if (labelSelector) q.set('labelSelector', labelSelector);
    if (page.limit) q.set('limit', String(page.limit));
    if (page.continue) q.set('continue', page.continue);
    const qs = q.toString();
    const headers = page.metadataOnly ? { Accept: METADATA_LIST } : undefined;
    return this.request<KubeList<T>>('GET', resourcePath(type, namespace) + (qs ? `?${qs}` : ''), undefined, undefined, headers);
  }

  /**
   * The object of that name, or undefined: a list limited to the name by a field selector, so it
   * needs only the list permission the informers have (no get).
   */
  async findByName<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string): Promise<T | undefined> {
    const q = new URLSearchParams({ fieldSelector: `metadata.name=${name}` });
    const list = await this.request<KubeList<T>>('GET', `${resourcePath(type, namespace)}?${q}`);
    return list.items[0];
  }

  create<T extends KubeObject>(type: ResourceType, obj: T): Promise<T> {
    return this.request<T>('POST', resourcePath(type, obj.metadata.namespace), obj);
  }

  replace<T extends KubeObject>(type: ResourceType, obj: T): Promise<T> {
    return this.request<T>('PUT', resourcePath(type, obj.metadata.namespace, obj.metadata.name), obj);
  }

  delete(type: ResourceType, namespace: string | undefined, name: string): Promise<unknown> {
    return this.request('DELETE', resourcePath(type, namespace, name));
  }

  /** Server-side apply: the fields in `obj` become owned by `fieldManager`. */
  apply<T extends KubeObject>(type: ResourceType, obj: T, fieldManager: string, subresource?: string): Promise<T> {
    const q = new URLSearchParams({ fieldManager, force: 'true' });
    const path = resourcePath(type, obj.metadata.namespace, obj.metadata.name, subresource);
    return this.request<T>('PATCH', `${path}?${q}`, obj, 'application/apply-patch+yaml');
  }

  mergePatch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    name: string,
    patch: unknown,
    subresource?: string,
  ): Promise<T> {
    const path = resourcePath(type, namespace, name, subresource);
    return this.request<T>('PATCH', path, patch, 'application/merge-patch+json');
  }

  /**
   * Opens a watch and calls `onEvent` per event until the server ends it
   * (timeoutSeconds), the signal aborts, or the connection fails. Resolves
   * when the stream ends; rejects on a non-2xx answer or a network error.
   */
  async watch<T extends KubeObject>(
    type: ResourceType,
    namespace: string | undefined,
    params: { resourceVersion: string; labelSelector?: string; timeoutSeconds: number; metadataOnly?: boolean },
    onEvent: (event: WatchEvent<T>) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const q = new URLSearchParams({
      watch: 'true',
      allowWatchBookmarks: 'true',
      resourceVersion: params.resourceVersion,
      timeoutSeconds: String(params.timeoutSeconds),
    });
    if (params.labelSelector) q.set('labelSelector', params.labelSelector);
    this.onRequest('watch', type.resource);
    const headers = params.metadataOnly ? { Accept: METADATA_OBJECT } : undefined;
    const res = await this.send('GET', `${resourcePath(type, namespace)}?${q}`, undefined, undefined, signal, headers);
    if ((res.statusCode ?? 0) >= 300) {
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      throw new KubeApiError(res.statusCode ?? 0, 'WatchFailed', `watch ${type.resource}: ${Buffer.concat(chunks)}`);
    }
    const lines = createInterface({ input: res, crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        if (line.trim()) onEvent(JSON.parse(line) as WatchEvent<T>);
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    }
  }
}
