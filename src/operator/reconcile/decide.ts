// The decide phase of a reconcile: a pure function of what was gathered.
// It says which Events to record, what the failover record becomes, which
// children to apply (only those missing or drifted from the cache: an idle
// operator writes nothing), and the conditions the other parts of the
// operator own (PrimaryHealthy, FailoverActive, BackupReachable), and how
// many relay replicas the StatefulSet gets (scale-down.ts: relays drain first).
import type { Condition, MailContinuityStatus } from '../../api/v1alpha1/mailcontinuity.js';
import { buildChildren, childNames, type RelayAccess, type RelayGoogle } from '../builders/index.js';
import { backupReachableCondition } from '../failover/backup.js';
import { planFailover, type FailoverRecord, type PlannedEvent } from '../failover/plan.js';
import { scheduleAt, scheduleStatus } from '../failover/schedule.js';
import { HealthTracker, primaryHealthyCondition, primaryStatus } from '../health/hysteresis.js';
import { describeTarget } from '../health/loop.js';
import { isSubset } from '../kube/subset.js';
import type { KubeObject } from '../kube/types.js';
import { describeSecretProblem, RECONCILING, STALLED, type SecretProblem, type Stall } from '../status.js';
import { childKey, type Live } from './gather.js';
import { controlledBy, notOwnedStall, stallEvent as stallEventOf } from './ownership.js';
import { imageRepository, relayImageStall } from './relay-image.js';
import type { LogFormat } from '../../lib/log.js';
import { acceptFromStall } from './accept-from.js';
import { decideScale, DRAINING_RELAYS, type ScalePlan } from './scale-down.js';
import { secretProblems } from './secrets.js';

export interface Plan {
  /** The failover's Events (a transition, a completed replay). */
  failoverEvents: PlannedEvent[];
  /** The Event of a new stall (a Secret or key is missing, a child not owned, and was not before). */
  stallEvent?: PlannedEvent;
  failover: FailoverRecord;
  secretProblems: SecretProblem[];
  /** Stalled for another reason than a Secret (a cached child that is not this resource's). */
  stall?: Stall;
  /** Children to apply, in apply order (none while stalled). */
  apply: { child: KubeObject; reason: 'missing' | 'drift' }[];
  /** Conditions owned by the health probes and the failover phase. */
  conditions: Omit<Condition, 'lastTransitionTime'>[];
  primary?: MailContinuityStatus['primary'];
  /** status.relay numbers the relays reported (absent: no relay answered yet). */
  relayQueues?: { queuedPrimary: number; queuedBackup: number };
  /** The StatefulSet's replicas, the relays to drain, the drain's Events and condition. */
  scale: ScalePlan;
  /** status.schedule: the maintenance window in progress and the next (undefined: none ahead). */
  schedule: MailContinuityStatus['schedule'];
  /** Reconcile again then: the next start or end of a maintenance window. */
  requeueAfterMs?: number;
}

export interface DecideOptions {
  defaultImage: string;
  /** Only for tests and the demo: the relays' Google clients go to these loopback URLs (relay config `google`). */
  relayGoogle?: RelayGoogle;
  /** The relays log in this format (their --log-format): the operator's own. Default json. */
  relayLogFormat?: LogFormat;
  /** Who may reach the relays' admin and metrics port (the NetworkPolicy). */
  relayAccess?: RelayAccess;
  /** Images spec.relay.image may name (relay-image.ts); default: the repository of defaultImage. */
  allowedImages?: readonly string[];
  now: Date;
}

export function decide(seen: Live, opts: DecideOptions): Plan {
  const { mc, health } = seen;
  const conditions: Plan['conditions'] = [];
  if (seen.probing) {
    // Not probed yet (a new resource, or a new target): Unknown, with the target named.
    const shown =
      health ??
      new HealthTracker(
        {
          failureThreshold: mc.spec.primary.health.failureThreshold,
          successThreshold: mc.spec.primary.health.successThreshold,
        },
        { target: describeTarget(mc.spec.primary) },
      ).current;
    conditions.push(primaryHealthyCondition(shown));
  }
  // Health and failover go on whatever else is wrong: the relay may be running. Only a relay
  // StatefulSet of this resource can carry a failover: before the first one, nothing fails over.
  const sts = seen.current.get(childKey('StatefulSet', childNames(mc).statefulSet)) as
    | (KubeObject & { spec?: { replicas?: number } })
    | undefined;
  const relaysDeployed = sts !== undefined && controlledBy(sts, mc);
  const failover = planFailover(seen.failover, mc.spec, health, seen.tally, opts.now, { relaysDeployed });
  const windows = scheduleAt(mc.spec.failover.schedule, opts.now);
  conditions.push(failover.decision.condition, backupReachableCondition(seen.tally));

  const problems = secretProblems(seen.secretRefs, seen.secrets);
  const wasStalled = mc.status?.conditions?.some((c) => c.type === STALLED && c.status === 'True');
  const stallEvent: PlannedEvent | undefined =
    problems.length > 0 && !wasStalled
      ? {
          type: 'Warning',
          reason: problems[0]!.missingKey ? 'SecretKeyMissing' : 'SecretNotFound',
          message: problems.map((p) => describeSecretProblem(p, mc.metadata.namespace)).join('; '),
        }
      : undefined;

  const scale = decideScale({
    name: mc.metadata.name,
    desired: mc.spec.relay.replicas,
    current: sts?.spec?.replicas,
    reports: seen.relays,
    prev: seen.scaleDown,
    statusDraining: mc.status?.conditions?.some((c) => c.type === RECONCILING && c.status === 'True' && c.reason === DRAINING_RELAYS) ?? false,
  });

  const apply: Plan['apply'] = [];
  let stall: Stall | undefined;
  if (problems.length === 0) {
    const built = buildChildren(mc, {
      defaultImage: opts.defaultImage,
      relayGoogle: opts.relayGoogle,
      relayLogFormat: opts.relayLogFormat,
      relayAccess: opts.relayAccess,
      adminToken: seen.adminToken,
      relayReplicas: scale.replicas,
    });
    const cached = built.flatMap((c) => seen.current.get(childKey(c.kind, c.metadata.name)) ?? []);
    stall =
      relayImageStall(mc, opts.allowedImages ?? [imageRepository(opts.defaultImage)]) ??
      acceptFromStall(mc) ??
      notOwnedStall(mc, cached);
    for (const child of stall ? [] : built) {
      const current = seen.current.get(childKey(child.kind, child.metadata.name));
      if (!current || !isSubset(child, current)) apply.push({ child, reason: current ? 'drift' : 'missing' });
    }
  }

  const t = seen.tally;
  return {
    failoverEvents: failover.events,
    ...(stallEvent ? { stallEvent } : stall ? { stallEvent: stallEventOf(mc, stall) } : {}),
    failover: failover.next,
    secretProblems: problems,
    ...(stall ? { stall } : {}),
    apply,
    conditions,
    ...(health?.lastProbeTime ? { primary: primaryStatus(health) } : {}),
    ...(t ? { relayQueues: { queuedPrimary: t.queuedPrimary, queuedBackup: t.queuedBackup } } : {}),
    scale,
    schedule: scheduleStatus(windows),
    ...(windows.nextBoundaryMs !== undefined
      ? { requeueAfterMs: Math.min(windows.nextBoundaryMs + BOUNDARY_SLACK_MS, MAX_BOUNDARY_WAIT_MS) }
      : {}),
  };
}

/** A reconcile at a window's boundary runs this much after it, so `now` is past it. */
const BOUNDARY_SLACK_MS = 50;
/** A window far ahead is looked at again every hour (timers do not reach weeks). */
const MAX_BOUNDARY_WAIT_MS = 3_600_000;
