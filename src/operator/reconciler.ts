// Reconcile one MailContinuity as a list of phases (CloudNativePG style):
//
//   secrets  read the users' Secrets it references that changed since last read
//            (kube/secret-reader.ts: the only reads from the API; no Secret is cached
//            that no MailContinuity references);
//   gather   read it and everything it depends on from the informer caches and
//            the operator's loops (reconcile/gather.ts); gone or being deleted
//            -> stop its loops (the children carry controller ownerReferences:
//            the garbage collector removes them);
//   decide   a pure function of what was gathered (reconcile/decide.ts): the
//            failover record and its Events, what is wrong with the referenced
//            Secrets, the children that are missing or drifted;
//   act      one named phase after the other:
//              failover  keep the primary probed, hand the record to the
//                        continuity sync loop (which tells the relays), record
//                        the failover's Events — whatever else is wrong, as the
//                        relay may be running;
//              secrets   a missing Secret or key stalls it (a human must act)
//                        until it appears: the Secret informer re-enqueues it;
//              children  server-side apply of the missing and drifted children
//                        only (an idle operator writes nothing);
//              scale     the relays a scale-down removes are told to drain (the
//                        sync loop pushes it), the drain's Events recorded;
//              status    computed in one place (status.ts), written only when
//                        it changed.
// Reads come from the caches, never from the API; nothing here calls back into
// the controller.
import type { Logger } from 'pino';
import { randomBytes } from 'node:crypto';
import type { MailContinuity } from '../api/v1alpha1/mailcontinuity.js';
import { childNames, type RelayAccess, type RelayGoogle } from './builders/index.js';
import type { Continuity } from './failover/continuity.js';
import type { PlannedEvent } from './failover/plan.js';
import type { EventRecorder } from './events.js';
import type { PrimarySpec } from './health/probe.js';
import type { KubeClient, KubeObject } from './kube/client.js';
import { CHILD_TYPES, MAILCONTINUITIES } from './kube/resources.js';
import type { Informer } from './kube/informer.js';
import type { SecretReader } from './kube/secret-reader.js';
import { decide, type Plan } from './reconcile/decide.js';
import { referencedSecrets } from './reconcile/secrets.js';
import { CHILD_NOT_OWNED, notOwnedStall, stallEvent } from './reconcile/ownership.js';
import { childKey, gather, type Caches, type HealthSource, type Live } from './reconcile/gather.js';
import { computeStatus, statusChanged, statusPatch, type StatusInputs } from './status.js';
import type { LogFormat } from '../lib/log.js';

export { adminToken, type Caches } from './reconcile/gather.js';
export { referencedSecrets } from './reconcile/secrets.js';

/** The probe loops, as the reconcile reads and starts them. */
export interface Probes extends HealthSource {
  ensure(key: string, primary: PrimarySpec): void;
  remove(key: string): Promise<void>;
}

export interface ReconcilerDeps {
  client: KubeClient;
  caches: Caches;
  /** Reads the referenced Secrets that changed (into caches.secrets). */
  secretReader: Pick<SecretReader, 'refresh' | 'release'>;
  /** Every object of each owned kind by name (metadata-only informers): absent, no look-up needed. */
  childIndex?: Record<string, Pick<Informer<KubeObject>, 'get'>>;
  fieldManager: string;
  defaultImage: string;
  /** Only for tests and the demo: the relays' Google clients go to these loopback URLs (relay config `google`). */
  relayGoogle?: RelayGoogle;
  /** The relays log in this format (their --log-format): the operator's own. Default json. */
  relayLogFormat?: LogFormat;
  /** Who may reach the relays' admin and metrics port (their NetworkPolicy). */
  relayAccess?: RelayAccess;
  /** Images spec.relay.image may name (default: the repository of defaultImage). */
  allowedImages?: readonly string[];
  recorder: Pick<EventRecorder, 'record'>;
  log: Logger;
  /** The continuity sync loops (failover record, relays' numbers). */
  continuity: Pick<Continuity, 'record' | 'tally' | 'relays' | 'scaleDown' | 'drain' | 'set' | 'remove'>;
  /** The primaries' probe loops; absent: not probed (PrimaryHealthy is not reported). */
  probes?: Probes;
  now?: () => Date;
  /** Draws the relays' admin token when the cluster has none (default: 32 random bytes). */
  newToken?: () => string;
}

export interface ReconcileResult {
  /** What happened, for logs and metrics. */
  outcome: 'Gone' | 'Stalled' | 'Applied' | 'UpToDate';
  writes: number;
  /** Look again after this long (an object in the way that no cache may show leaving). */
  requeueAfterMs?: number;
}

/** How often a resource stalled on a child it does not own looks again. */
export const NOT_OWNED_RECHECK_MS = 30_000;

const randomToken = () => randomBytes(32).toString('base64url');

/** The earliest of the requeues asked for, if any. */
function requeue(...after: (number | undefined)[]): { requeueAfterMs?: number } {
  const ms = after.filter((a): a is number => a !== undefined);
  return ms.length > 0 ? { requeueAfterMs: Math.min(...ms) } : {};
}

export class Reconciler {
  constructor(private readonly deps: ReconcilerDeps) {}

  async reconcile(namespace: string, name: string): Promise<ReconcileResult> {
    const { deps } = this;
    const now = (deps.now ?? (() => new Date()))();
    await this.readSecrets(namespace, name);
    const seen = gather(
      {
        caches: deps.caches,
        health: deps.probes,
        failover: deps.continuity,
        newToken: deps.newToken ?? randomToken,
      },
      namespace,
      name,
    );
    if (seen.kind === 'gone') {
      void deps.probes?.remove(seen.key);
      deps.continuity.remove(seen.key);
      return { outcome: 'Gone', writes: 0 };
    }
    if (seen.kind === 'invalid') {
      deps.log.error({ key: seen.key, message: seen.message }, 'invalid spec');
      const writes = await this.writeStatus(seen.mc, { invalidSpec: `invalid spec: ${seen.message}` }, now);
      return { outcome: 'Stalled', writes };
    }

    const plan = decide(seen, {
      defaultImage: deps.defaultImage,
      relayGoogle: deps.relayGoogle,
      relayLogFormat: deps.relayLogFormat,
      relayAccess: deps.relayAccess,
      allowedImages: deps.allowedImages,
      now,
    });
    await this.failoverPhase(seen, plan);
    if (plan.secretProblems.length === 0 && !plan.stall) {
      // Children missing from the cache may still exist (not labelled as ours, or the cache is
      // behind): read them, and adopt none that is not ours.
      plan.stall = notOwnedStall(seen.mc, await this.existing(plan));
      if (plan.stall) plan.stallEvent = stallEvent(seen.mc, plan.stall);
    }
    if (plan.secretProblems.length > 0 || plan.stall) {
      if (plan.stallEvent) await this.recordEvents(seen.mc, [plan.stallEvent]);
      const writes = await this.statusPhase(seen, plan, now);
      const recheck = plan.stall?.reason === CHILD_NOT_OWNED ? NOT_OWNED_RECHECK_MS : undefined;
      return { outcome: 'Stalled', writes, ...requeue(recheck, plan.requeueAfterMs) };
    }
    let writes = 0;
    let applyError: string | undefined;
    try {
      writes += await this.childrenPhase(seen, plan);
      await this.scalePhase(seen, plan);
    } catch (err) {
      applyError = (err as Error).message;
    }
    writes += await this.statusPhase(seen, plan, now, applyError);
    if (applyError) throw new Error(applyError);
    return { outcome: writes > 0 ? 'Applied' : 'UpToDate', writes, ...requeue(plan.requeueAfterMs) };
  }

  /** The Secrets the stored spec references, brought up to date (forgotten once it is gone). */
  private async readSecrets(namespace: string, name: string): Promise<void> {
    const key = `${namespace}/${name}`;
    const mc = this.deps.caches.mailContinuities.get(namespace, name);
    if (!mc || mc.metadata.deletionTimestamp) return this.deps.secretReader.release(key);
    let names: string[] = [];
    try {
      // As stored, with the apiserver's defaults; a spec that cannot be read is gather's to report.
      names = referencedSecrets(mc.spec).map((r) => r.name);
    } catch {
      names = [];
    }
    await this.deps.secretReader.refresh(key, namespace, names);
  }

  /** Probes running for the current spec, the decided record with the sync loop, its Events recorded. */
  private async failoverPhase(seen: Live, plan: Plan): Promise<void> {
    this.deps.probes?.ensure(seen.key, seen.primary);
    this.deps.continuity.set(seen.mc, plan.failover);
    for (const e of plan.failoverEvents) {
      this.deps.log[e.type === 'Warning' ? 'warn' : 'info']({ key: seen.key, reason: e.reason }, e.message);
    }
    await this.recordEvents(seen.mc, plan.failoverEvents);
  }

  private async recordEvents(mc: MailContinuity, events: PlannedEvent[]): Promise<void> {
    for (const e of events) await this.deps.recorder.record(mc, e.type, e.reason, e.message);
  }

  /** The children the cache lacks that exist in the API all the same. */
  private async existing(plan: Plan): Promise<KubeObject[]> {
    // In parallel: a new resource misses all of its children, and each look is a round trip.
    const found = await Promise.all(
      plan.apply
        .filter((a) => a.reason === 'missing')
        // Nothing of that name in the index: nothing to look up (the index may lag a creation by
        // a moment, as a look-up may miss one that comes right after it).
        .filter(({ child }) => {
          const index = this.deps.childIndex?.[child.kind];
          return !index || index.get(child.metadata.namespace, child.metadata.name) !== undefined;
        })
        .map(async ({ child }) => {
          const obj = await this.deps.client.findByName(CHILD_TYPES[child.kind]!, child.metadata.namespace, child.metadata.name);
          return obj && { ...obj, kind: child.kind };
        }),
    );
    return found.filter((o): o is KubeObject => o !== undefined);
  }

  /** Applies the children that are missing or differ from the cache; returns the number of writes. */
  private async childrenPhase(seen: Live, plan: Plan): Promise<number> {
    const { client, fieldManager, log } = this.deps;
    // In parallel (each is its own object; the relay Pods wait for what they mount anyway).
    const results = await Promise.allSettled(
      plan.apply.map(({ child, reason }) => {
        log.info({ key: seen.key, kind: child.kind, name: child.metadata.name, reason }, 'applying child');
        return client.apply(CHILD_TYPES[child.kind]!, child, fieldManager);
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return plan.apply.length;
  }

  /** The relays to drain handed to the sync loop (which tells them), the drain's Events recorded. */
  private async scalePhase(seen: Live, plan: Plan): Promise<void> {
    const { scale } = plan;
    this.deps.continuity.drain(seen.key, scale.drain, scale.next);
    for (const e of scale.events) this.deps.log.info({ key: seen.key, reason: e.reason }, e.message);
    await this.recordEvents(seen.mc, scale.events);
  }

  private statusPhase(seen: Live, plan: Plan, now: Date, applyError?: string): Promise<number> {
    const sts = seen.current.get(childKey('StatefulSet', childNames(seen.mc).statefulSet)) as
      | { metadata: { generation?: number }; status?: Record<string, number> }
      | undefined;
    return this.writeStatus(
      seen.mc,
      {
        secretProblems: plan.secretProblems,
        stall: plan.stall,
        applyError,
        statefulSet: sts && { ...sts.status, generation: sts.metadata.generation },
        extraConditions: plan.conditions,
        primary: plan.primary,
        lastFailover: plan.failover.lastFailover,
        relayQueues: plan.relayQueues,
        draining: plan.scale.draining,
        schedule: plan.schedule,
      },
      now,
    );
  }

  private async writeStatus(
    mc: MailContinuity,
    inputs: Omit<StatusInputs, 'mc' | 'now' | 'secretProblems'> & Partial<Pick<StatusInputs, 'secretProblems'>>,
    now: Date,
  ): Promise<number> {
    const status = computeStatus({ secretProblems: [], ...inputs, mc, now });
    if (!statusChanged(mc.status, status)) return 0;
    await this.deps.client.mergePatch(MAILCONTINUITIES, mc.metadata.namespace, mc.metadata.name, { status: statusPatch(mc.status, status) }, 'status');
    return 1;
  }
}
