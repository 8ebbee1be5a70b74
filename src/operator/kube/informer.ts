// A list+watch cache that does not lose its watch. TypeScript operator
// frameworks tend to stop reconciling silently when a watch ends with an
// error; this one:
//   - re-watches from the last resourceVersion when the server ends a watch
//     (it asks for one every few minutes with timeoutSeconds);
//   - relists after any error (410 Gone, connection refused, apiserver
//     restart), with capped exponential backoff, and emits the differences as
//     add/update/delete so no change is missed;
//   - aborts a watch that has gone quiet for longer than the server's timeout
//     plus a margin (a half-open connection), and relists;
//   - relists periodically anyway (resync), as client-go's reflector does.
import type { Logger } from 'pino';
import { KubeApiError, type KubeClient, type KubeList, type KubeObject, type ResourceType } from './client.js';

export type InformerEvent = 'add' | 'update' | 'delete';
export type Handler<T> = (event: InformerEvent, obj: T, old?: T) => void;

export interface InformerOptions {
  namespace?: string;
  labelSelector?: string;
  /** Full relist period (jittered by up to 20%). */
  resyncMs?: number;
  /** Server-side watch timeout; the watch is renewed after it. */
  watchTimeoutSeconds?: number;
  log: Logger;
  /** Called on every restart after an error, for metrics. */
  onRestart?: (resource: string, reason: string) => void;
  /**
   * Cache names and versions only (PartialObjectMetadata, with neither labels nor annotations):
   * enough to learn that an object appeared, changed or went, and nothing of its content.
   */
  metadataOnly?: boolean;
  /** Items per list request (default 250): a relist of thousands holds one page at a time. */
  pageSize?: number;
}

/** Annotations kubectl and others write that hold a whole copy of the object: never cached. */
const BULKY_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * The object as the cache keeps it: without managedFields (nothing here reads them, and they are
 * often larger than the object) and without kubectl's last-applied copy; for a metadata-only
 * informer, its identity and version alone.
 */
export function cacheForm<T extends KubeObject>(obj: T, apiVersion: string, metadataOnly = false): T {
  const meta = obj.metadata ?? {};
  if (metadataOnly) {
    const { name, namespace, uid, resourceVersion } = meta;
    return { apiVersion, kind: obj.kind, metadata: { name, namespace, uid, resourceVersion } } as T;
  }
  const { managedFields: _managed, ...metadata } = meta as typeof meta & { managedFields?: unknown };
  if (metadata.annotations && BULKY_ANNOTATION in metadata.annotations) {
    const { [BULKY_ANNOTATION]: _copy, ...annotations } = metadata.annotations;
    metadata.annotations = annotations;
  }
  return { ...obj, apiVersion, metadata } as T;
}

export const keyOf = (obj: { metadata: { namespace?: string; name: string } }) =>
  obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;

/** Waits `ms` or until `signal` aborts; the abort listener goes with the timer (a watch that keeps restarting must not pile them up). */
const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const onAbort = () => (clearTimeout(t), resolve());
    const t = setTimeout(() => (signal.removeEventListener('abort', onAbort), resolve()), ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });

class QuietWatch extends Error {}

export class Informer<T extends KubeObject> {
  private readonly cache = new Map<string, T>();
  private readonly handlers: Handler<T>[] = [];
  private resourceVersion = '';
  private nextRelist = 0;
  private stopper = new AbortController();
  private loop: Promise<void> | undefined;
  private syncedResolve!: () => void;
  readonly synced = new Promise<void>((r) => (this.syncedResolve = r));
  private readonly resyncMs: number;
  private readonly watchTimeoutSeconds: number;

  constructor(
    private readonly client: KubeClient,
    readonly type: ResourceType,
    private readonly opts: InformerOptions,
  ) {
    this.resyncMs = opts.resyncMs ?? 10 * 60_000;
    this.watchTimeoutSeconds = opts.watchTimeoutSeconds ?? 300;
  }

  on(handler: Handler<T>): void {
    this.handlers.push(handler);
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.cache.get(namespace ? `${namespace}/${name}` : name);
  }

  /** Objects in the cache (a metric). */
  get size(): number {
    return this.cache.size;
  }

  list(namespace?: string): T[] {
    const all = [...this.cache.values()];
    return namespace ? all.filter((o) => o.metadata.namespace === namespace) : all;
  }

  start(): void {
    if (this.loop) return;
    this.stopper = new AbortController();
    this.loop = this.run(this.stopper.signal);
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    await this.loop;
    this.loop = undefined;
  }

  private emit(event: InformerEvent, obj: T, old?: T) {
    for (const h of this.handlers) {
      try {
        h(event, obj, old);
      } catch (err) {
        this.opts.log.error({ err, resource: this.type.resource }, 'informer handler failed');
      }
    }
  }

  private async relist(): Promise<void> {
    const seen = new Set<string>();
    let list: KubeList<T> | undefined;
    do {
      list = await this.client.list<T>(this.type, this.opts.namespace, this.opts.labelSelector, {
        limit: this.opts.pageSize ?? 250,
        continue: list?.metadata.continue,
        metadataOnly: this.opts.metadataOnly,
      });
      // An empty PartialObjectMetadataList carries `items: null`.
      for (const item of list.items ?? []) {
        // Lists carry no apiVersion per item.
        const obj = cacheForm(item, this.type.apiVersion, this.opts.metadataOnly);
        const key = keyOf(obj);
        seen.add(key);
        const old = this.cache.get(key);
        this.cache.set(key, obj);
        if (!old) this.emit('add', obj);
        else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) this.emit('update', obj, old);
      }
    } while (list.metadata.continue);
    for (const [key, old] of this.cache) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.emit('delete', old);
      }
    }
    this.resourceVersion = list.metadata.resourceVersion ?? '';
    this.nextRelist = Date.now() + this.resyncMs * (1 + Math.random() * 0.2);
    this.syncedResolve();
  }

  private async watchOnce(signal: AbortSignal): Promise<void> {
    const untilRelist = Math.max(1, Math.floor((this.nextRelist - Date.now()) / 1000));
    const timeoutSeconds = Math.min(this.watchTimeoutSeconds, untilRelist);
    const watchAbort = new AbortController();
    const onStop = () => watchAbort.abort();
    signal.addEventListener('abort', onStop, { once: true });
    // Watchdog: the server sends at least a bookmark or closes within timeoutSeconds.
    const quietMs = (timeoutSeconds + 30) * 1000;
    let quiet = false;
    let dog = setTimeout(() => ((quiet = true), watchAbort.abort()), quietMs);
    try {
      await this.client.watch<T>(
        this.type,
        this.opts.namespace,
        {
          resourceVersion: this.resourceVersion,
          labelSelector: this.opts.labelSelector,
          timeoutSeconds,
          metadataOnly: this.opts.metadataOnly,
        },
        (ev) => {
          clearTimeout(dog);
          dog = setTimeout(() => ((quiet = true), watchAbort.abort()), quietMs);
          this.apply(ev.type, ev.object);
        },
        watchAbort.signal,
      );
    } finally {
      clearTimeout(dog);
      signal.removeEventListener('abort', onStop);
    }
    if (quiet) throw new QuietWatch(`watch of ${this.type.resource} silent for ${quietMs} ms`);
  }

  private apply(type: string, object: T | { code?: number; message?: string }) {
    if (type === 'ERROR') {
      const status = object as { code?: number; message?: string };
      throw new KubeApiError(status.code ?? 500, 'WatchError', status.message ?? 'watch error');
    }
    const raw = object as T;
    if (raw.metadata?.resourceVersion) this.resourceVersion = raw.metadata.resourceVersion;
    if (type === 'BOOKMARK') return;
    const obj = cacheForm(raw, this.type.apiVersion, this.opts.metadataOnly);
    const key = keyOf(obj);
    const old = this.cache.get(key);
    if (type === 'DELETED') {
      this.cache.delete(key);
      this.emit('delete', obj);
    } else {
      this.cache.set(key, obj);
      this.emit(old ? 'update' : 'add', obj, old);
    }
  }

  private async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (!this.resourceVersion || Date.now() >= this.nextRelist) await this.relist();
        await this.watchOnce(signal);
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        this.resourceVersion = ''; // relist: whatever happened meanwhile is picked up as a diff
        const gone = err instanceof KubeApiError && err.code === 410;
        failures = gone ? 0 : failures + 1;
        const reason = gone ? 'Gone' : err instanceof QuietWatch ? 'QuietWatch' : 'Error';
        this.opts.onRestart?.(this.type.resource, reason);
        const delay = gone ? 0 : Math.min(30_000, 250 * 2 ** Math.min(failures - 1, 7)) * (0.5 + Math.random());
        this.opts.log.warn(
          { resource: this.type.resource, reason, err: (err as Error).message, retryInMs: Math.round(delay) },
          'informer restarting',
        );
        await sleep(delay, signal);
      }
    }
  }
}
