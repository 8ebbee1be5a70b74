// Wires the informers to the work queue and the reconciler. In one place, as
// cert-manager's controllers do, it says which event enqueues which key:
//   - a MailContinuity changes               -> that MailContinuity;
//   - an owned child changes or disappears   -> its controller owner;
//   - an object named like a child, not ours -> the MailContinuity it blocks;
//   - a Secret appears, changes or goes      -> every MailContinuity in its
//     (a metadata-only watch: no data)          namespace that references it
//                                               (which reads it then);
//   - the primary's health verdict changes,
//     or a relay's numbers do                -> that MailContinuity.
// It also creates the per-resource loops that are not reconciles: the health
// probes of the primary (health/loop.ts) and the continuity sync with the
// relays (failover/continuity.ts), and hands them to the reconciler, whose
// phases read them and start them (one place decides and writes status).
import type { Logger } from 'pino';
import { KIND, type MailContinuity } from '../api/v1alpha1/mailcontinuity.js';
import { LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY } from './builders/common.js';
import { childNames, type RelayAccess, type RelayGoogle } from './builders/index.js';
import { EventRecorder } from './events.js';
import { Continuity } from './failover/continuity.js';
import { PodDirectory, StaticDirectory, type RelayDirectory } from './failover/relays.js';
import { ProbeLoop, type ProbeFn } from './health/loop.js';
import type { KubeClient } from './kube/client.js';
import { Informer, keyOf } from './kube/informer.js';
import { CHILD_TYPES, MAILCONTINUITIES, PODS, SECRETS } from './kube/resources.js';
import { SecretReader } from './kube/secret-reader.js';
import type { KubeObject } from './kube/types.js';
import type { LogFormat } from '../lib/log.js';
import type { OperatorMetrics } from './metrics.js';
import { adminToken, Reconciler, referencedSecrets } from './reconciler.js';
import { WorkQueue } from './workqueue.js';

export interface ControllerOptions {
  client: KubeClient;
  log: Logger;
  metrics: OperatorMetrics;
  fieldManager: string;
  defaultImage: string;
  /** Only for tests and the demo: the relays' Google clients go to these loopback URLs (relay config `google`). */
  relayGoogle?: RelayGoogle;
  /** The relays log in this format (their --log-format): the operator's own. Default json. */
  relayLogFormat?: LogFormat;
  /** Who may reach the relays' admin and metrics port (their NetworkPolicy; default: no Pod). */
  relayAccess?: RelayAccess;
  /** Images spec.relay.image may name (default: the repository of defaultImage). */
  allowedRelayImages?: readonly string[];
  /** Watch only this namespace (default: all). */
  namespace?: string;
  workers: number;
  resyncMs?: number;
  watchTimeoutSeconds?: number;
  /** Probe the primaries (default true; false: PrimaryHealthy is not reported, failover is manual only). */
  probes?: boolean;
  /** Replaces the real probe (tests). */
  probe?: ProbeFn;
  /**
   * Longest time status.primary may go unrefreshed while the verdict holds. Default: never — it is
   * written when the verdict changes, so 500 idle resources cause no status writes; the live
   * latency and counts are in the probe metrics.
   */
  healthStatusIntervalMs?: number;
  /** `ns/name=URL,...`: relays that are local processes, not Pods (demo, tests). Default: relay Pods. */
  localRelays?: string[];
  /** Sync with the relays during a failover or replay (default 5 s) and otherwise (default 30 s). */
  activeSyncMs?: number;
  idleSyncMs?: number;
}

const managedSelector = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;

export class Controller {
  readonly mailContinuities: Informer<MailContinuity & KubeObject>;
  readonly children: Record<string, Informer<KubeObject>> = {};
  /** Every Secret's name and version, no data: which Secrets appear, change or go. */
  readonly secretIndex: Informer<KubeObject>;
  /** Every object of each owned kind, by name only (secretIndex for Secrets). */
  readonly childIndex: Record<string, Informer<KubeObject>> = {};
  /** The referenced Secrets, read when they change. */
  readonly secrets: SecretReader;
  readonly queue: WorkQueue;
  readonly recorder: EventRecorder;
  private readonly reconciler: Reconciler;
  readonly probes: ProbeLoop | undefined;
  readonly continuity: Continuity;
  private readonly pods: Informer<KubeObject> | undefined;
  private workers: Promise<void>[] = [];
  private started = false;

  constructor(private readonly opts: ControllerOptions) {
    const { client, log, metrics } = opts;
    const informerOpts = {
      namespace: opts.namespace,
      log,
      resyncMs: opts.resyncMs,
      watchTimeoutSeconds: opts.watchTimeoutSeconds,
      onRestart: (resource: string, reason: string) => metrics.informerRestarts.inc({ resource, reason }),
    };
    this.queue = new WorkQueue({
      onAdd: () => metrics.queueAdds.inc(),
      onRetry: () => metrics.queueRetries.inc(),
      onDepth: (d) => metrics.queueDepth.set(d),
    });
    this.mailContinuities = new Informer(client, MAILCONTINUITIES, informerOpts);
    this.mailContinuities.on((_event, mc) => this.queue.add(keyOf(mc)));

    for (const [kind, type] of Object.entries(CHILD_TYPES)) {
      // Only ours (the relays' admin-token Secret included): the users' Secrets are not cached.
      const informer = new Informer<KubeObject>(client, type, { ...informerOpts, labelSelector: managedSelector });
      informer.on((_event, obj) => this.enqueueOwner(obj));
      this.children[kind] = informer;
    }
    this.secretIndex = new Informer<KubeObject>(client, SECRETS, { ...informerOpts, metadataOnly: true });
    // Every object of the owned kinds by name, no content: a child missing from the caches above
    // is looked up in the API only when something of its name exists (mostly: never).
    for (const [kind, type] of Object.entries(CHILD_TYPES)) {
      this.childIndex[kind] =
        kind === 'Secret' ? this.secretIndex : new Informer<KubeObject>(client, type, { ...informerOpts, metadataOnly: true });
    }
    this.secretIndex.on((_event, secret) => {
      this.enqueueReferrers(secret);
      this.enqueueOwner(secret); // a Secret named like a child, not ours (no label, so not cached)
    });
    this.secrets = new SecretReader(client, this.secretIndex);
    metrics.setCacheSource(() => this.cached());

    this.recorder = new EventRecorder(client, 'mail-continuity-operator', log);

    let directory: RelayDirectory;
    if (opts.localRelays && opts.localRelays.length > 0) {
      directory = new StaticDirectory(opts.localRelays);
    } else {
      this.pods = new Informer<KubeObject>(client, PODS, { ...informerOpts, labelSelector: managedSelector });
      // A relay Pod that appears, restarts or gets its IP learns the failover state at once.
      this.pods.on((_event, pod) => {
        const name = pod.metadata.labels?.[LABEL_INSTANCE];
        if (name) this.continuity.kick(`${pod.metadata.namespace}/${name}`);
      });
      directory = new PodDirectory(this.pods, this.children.StatefulSet!);
    }
    this.continuity = new Continuity({
      directory,
      token: (mc) => adminToken({ children: this.children }, mc),
      log,
      onChange: (key) => this.queue.add(key),
      onFailoverState: (namespace, name, active) => metrics.failoverActive.set({ namespace, name }, active ? 1 : 0),
      onPushError: () => metrics.relayPushErrors.inc(),
      activeSyncMs: opts.activeSyncMs,
      idleSyncMs: opts.idleSyncMs,
    });
    if (opts.probes !== false) {
      this.probes = new ProbeLoop({
        onChange: (key, state) => {
          const [namespace, name] = key.split('/') as [string, string];
          metrics.primaryHealthy.set({ namespace, name }, state.healthy === undefined ? -1 : state.healthy ? 1 : 0);
          this.queue.add(key);
        },
        probe: opts.probe,
        statusIntervalMs: opts.healthStatusIntervalMs ?? Infinity,
        onError: (key, err) => log.error({ key, err }, 'health probe callback failed'),
      });
    }
    this.reconciler = new Reconciler({
      client,
      caches: { mailContinuities: this.mailContinuities, children: this.children, secrets: this.secrets },
      secretReader: this.secrets,
      childIndex: this.childIndex,
      fieldManager: opts.fieldManager,
      defaultImage: opts.defaultImage,
      relayGoogle: opts.relayGoogle,
      relayLogFormat: opts.relayLogFormat,
      relayAccess: opts.relayAccess,
      allowedImages: opts.allowedRelayImages,
      recorder: this.recorder,
      log,
      continuity: this.continuity,
      probes: this.probes,
    });
  }

  /** Whether failover is active for namespace/name, as the operator decided it. */
  failoverActive(namespace: string, name: string): boolean {
    return this.continuity.state(`${namespace}/${name}`)?.active ?? false;
  }

  private enqueueOwner(obj: KubeObject) {
    const owner = obj.metadata.ownerReferences?.find((r) => r.controller && r.kind === KIND);
    if (owner) {
      this.queue.add(`${obj.metadata.namespace}/${owner.name}`);
      return;
    }
    // Not ours but named like a child (in the way of a MailContinuity, which stalls until it goes).
    for (const mc of this.mailContinuities.list(obj.metadata.namespace)) {
      if (Object.values(childNames(mc)).includes(obj.metadata.name)) this.queue.add(keyOf(mc));
    }
  }

  private enqueueReferrers(secret: KubeObject) {
    const ns = secret.metadata.namespace;
    for (const mc of this.mailContinuities.list(ns)) {
      // The spec is as stored (defaults applied by the apiserver), so the refs are there.
      const spec = mc.spec as MailContinuity['spec'];
      try {
        if (referencedSecrets(spec).some((r) => r.name === secret.metadata.name)) this.queue.add(keyOf(mc));
      } catch {
        this.queue.add(keyOf(mc)); // a spec we cannot read: let the reconciler report it
      }
    }
  }

  private informers(): Pick<Informer<KubeObject>, 'start' | 'stop' | 'synced'>[] {
    return [
      this.mailContinuities,
      ...Object.values(this.children),
      ...Object.values(this.childIndex),
      ...(this.pods ? [this.pods] : []),
    ];
  }

  /** Objects held in memory by resource (informer caches; "secrets" is the referenced Secrets read). */
  cached(): Record<string, number> {
    const out: Record<string, number> = { mailcontinuities: this.mailContinuities.size };
    for (const informer of Object.values(this.children)) out[informer.type.resource] = informer.size;
    for (const informer of Object.values(this.childIndex)) out[`${informer.type.resource}/metadata`] = informer.size;
    out.secrets = (out.secrets ?? 0) + this.secrets.size;
    if (this.pods) out.pods = this.pods.size;
    return out;
  }

  /** Starts the informers, waits for their first list, then starts the workers. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const all = this.informers();
    for (const i of all) i.start();
    await Promise.all(all.map((i) => i.synced));
    this.opts.log.info({ objects: this.mailContinuities.list().length }, 'caches synced, starting workers');
    for (let i = 0; i < this.opts.workers; i++) this.workers.push(this.work());
  }

  get synced(): boolean {
    return this.started;
  }

  private async work(): Promise<void> {
    const { log, metrics } = this.opts;
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      const [namespace, name] = key.split('/') as [string, string];
      const end = metrics.reconcileDuration.startTimer();
      try {
        const result = await this.reconciler.reconcile(namespace, name);
        end({ result: result.outcome });
        metrics.reconciles.inc({ result: result.outcome });
        this.queue.forget(key);
        if (result.requeueAfterMs !== undefined) this.queue.addAfter(key, result.requeueAfterMs);
        if (result.writes > 0) log.info({ key, outcome: result.outcome, writes: result.writes }, 'reconciled');
      } catch (err) {
        end({ result: 'Error' });
        metrics.reconciles.inc({ result: 'Error' });
        metrics.reconcileErrors.inc();
        log.warn({ key, err: (err as Error).message, retries: this.queue.retries(key) }, 'reconcile failed, retrying');
        this.queue.addRateLimited(key);
      } finally {
        this.queue.done(key);
      }
    }
  }

  async stop(): Promise<void> {
    this.queue.shutdown();
    await Promise.all(this.workers);
    await Promise.all([this.probes?.stopAll(), this.continuity.stopAll()]);
    const all = this.informers();
    await Promise.all(all.map((i) => i.stop()));
  }
}
