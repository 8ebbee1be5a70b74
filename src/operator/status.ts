// The status of a MailContinuity, computed in one place from gathered inputs
// (kstatus semantics, as Flux does):
//   Stalled=True      a human must act (a referenced Secret is missing, a child
//                     exists that the operator does not own);
//   Reconciling=True  work in flight (children being applied, relays draining
//                     before a scale-down, relay pods not ready);
//   Ready=True        last, when the relay is applied and all replicas are ready.
// Abnormal-true conditions (Stalled, Reconciling) are removed when they no
// longer hold. Conditions keep their lastTransitionTime while their status does
// not change, and the status is written only when it differs (no write loops).
import type { Condition, MailContinuity, MailContinuityStatus } from '../api/v1alpha1/mailcontinuity.js';

export const READY = 'Ready';
export const RECONCILING = 'Reconciling';
export const STALLED = 'Stalled';

export interface SecretProblem {
  /** The spec field that names the Secret, e.g. spec.backup.gmail.serviceAccountSecretRef. */
  field: string;
  name: string;
  /** The missing key, when the Secret exists but lacks it. */
  missingKey?: string;
}

/** A condition a human must act on: Stalled=True and Ready=False with this reason and message. */
export interface Stall {
  reason: string;
  message: string;
}

export interface StatusInputs {
  mc: MailContinuity;
  secretProblems: SecretProblem[];
  /** Another reason a human must act (a child the operator does not own, a relay image not allowed). */
  stall?: Stall;
  /** The spec does not parse (an object written before the CRD schema said no). */
  invalidSpec?: string;
  /** A failed apply of the children (transient: retried with backoff). */
  applyError?: string;
  statefulSet?: {
    observedGeneration?: number;
    generation?: number;
    replicas?: number;
    readyReplicas?: number;
    updatedReplicas?: number;
  };
  /** Conditions owned by other parts of the operator (health probes, failover), kept as given. */
  extraConditions?: Omit<Condition, 'lastTransitionTime'>[];
  /** status.primary from the health probes (kept as stored when undefined). */
  primary?: MailContinuityStatus['primary'];
  /** status.lastFailover from the failover phase (kept as stored when undefined). */
  lastFailover?: MailContinuityStatus['lastFailover'];
  /** Relays draining before a scale-down (reconcile/scale-down.ts): what they still hold. */
  draining?: { message: string };
  /** status.schedule (the maintenance windows); absent from the inputs: kept as stored, undefined: removed. */
  schedule?: MailContinuityStatus['schedule'];
  /** Queue depths summed over the relays that answered the last sync (kept as stored when undefined). */
  relayQueues?: { queuedPrimary: number; queuedBackup: number };
  now: Date;
}

type NewCondition = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>;

export function describeSecretProblem(p: SecretProblem, namespace: string | undefined): string {
  return p.missingKey
    ? `Secret ${namespace}/${p.name} (${p.field}) has no key "${p.missingKey}": add it to the Secret`
    : `Secret ${namespace}/${p.name} (${p.field}) not found: create it in namespace ${namespace}`;
}

/** The kstatus conditions for the inputs, without times. */
export function desiredConditions(inputs: StatusInputs): NewCondition[] {
  const { mc } = inputs;
  const desired = mc.spec.relay.replicas;
  const sts = inputs.statefulSet;
  const ready = sts?.readyReplicas ?? 0;

  if (inputs.invalidSpec) {
    const message = `${inputs.invalidSpec}: fix the MailContinuity`;
    return [
      { type: STALLED, status: 'True', reason: 'InvalidSpec', message },
      { type: READY, status: 'False', reason: 'InvalidSpec', message },
    ];
  }
  if (inputs.secretProblems.length > 0) {
    const message = inputs.secretProblems.map((p) => describeSecretProblem(p, mc.metadata.namespace)).join('; ');
    const reason = inputs.secretProblems.every((p) => p.missingKey) ? 'SecretKeyMissing' : 'SecretNotFound';
    return [
      { type: STALLED, status: 'True', reason, message },
      { type: READY, status: 'False', reason, message },
    ];
  }
  if (inputs.stall) {
    const { reason, message } = inputs.stall;
    return [
      { type: STALLED, status: 'True', reason, message },
      { type: READY, status: 'False', reason, message },
    ];
  }
  if (inputs.applyError) {
    const message = `applying the relay failed, retrying: ${inputs.applyError}`;
    return [
      { type: RECONCILING, status: 'True', reason: 'ProgressingWithRetry', message },
      { type: READY, status: 'False', reason: 'ApplyFailed', message },
    ];
  }
  if (inputs.draining) {
    const { message } = inputs.draining;
    return [
      { type: RECONCILING, status: 'True', reason: 'DrainingRelays', message },
      { type: READY, status: 'False', reason: 'DrainingRelays', message },
    ];
  }
  const rolledOut =
    sts !== undefined &&
    (sts.observedGeneration ?? 0) >= (sts.generation ?? 0) &&
    (sts.updatedReplicas ?? sts.replicas ?? 0) >= desired &&
    ready >= desired;
  if (!rolledOut) {
    const message = `waiting for the relay: ${ready}/${desired} replicas ready`;
    return [
      { type: RECONCILING, status: 'True', reason: 'RelayNotReady', message },
      { type: READY, status: 'False', reason: 'RelayNotReady', message },
    ];
  }
  return [{ type: READY, status: 'True', reason: 'Succeeded', message: `relay ready: ${ready}/${desired} replicas` }];
}

/** The whole new status; conditions that did not change keep their lastTransitionTime. */
export function computeStatus(inputs: StatusInputs): MailContinuityStatus {
  const { mc } = inputs;
  const generation = mc.metadata.generation ?? 0;
  const old = mc.status ?? {};
  const oldByType = new Map((old.conditions ?? []).map((c) => [c.type, c]));
  const kstatus = desiredConditions(inputs);
  const wanted = [...kstatus, ...(inputs.extraConditions ?? [])];
  // Conditions of other owners not re-stated here stay as they are (e.g. FailoverActive).
  const owned = new Set([READY, RECONCILING, STALLED, ...wanted.map((c) => c.type)]);
  const kept = (old.conditions ?? []).filter((c) => !owned.has(c.type));
  const conditions: Condition[] = [
    ...wanted.map((c) => {
      const prev = oldByType.get(c.type);
      const lastTransitionTime =
        prev && prev.status === c.status ? prev.lastTransitionTime : inputs.now.toISOString().replace(/\.\d{3}Z$/, 'Z');
      return { ...c, observedGeneration: generation, lastTransitionTime };
    }),
    ...kept,
  ];
  const { schedule: oldSchedule, ...rest } = old;
  const schedule = 'schedule' in inputs ? inputs.schedule : oldSchedule;
  return {
    ...rest,
    ...(schedule ? { schedule } : {}),
    ...(inputs.primary ? { primary: inputs.primary } : {}),
    ...(inputs.lastFailover ? { lastFailover: inputs.lastFailover } : {}),
    observedGeneration: generation,
    conditions,
    relay: {
      ...old.relay,
      ...inputs.relayQueues,
      replicas: inputs.statefulSet?.replicas ?? 0,
      readyReplicas: inputs.statefulSet?.readyReplicas ?? 0,
    },
  };
}

/**
 * The merge patch that makes `old` into `next`: a JSON merge patch leaves out what it does not
 * name, so the windows of status.schedule that are over are set to null.
 */
export function statusPatch(old: MailContinuityStatus | undefined, next: MailContinuityStatus): Record<string, unknown> {
  if (!old?.schedule) return next;
  const s = next.schedule;
  return {
    ...next,
    schedule: s ? { activeWindow: s.activeWindow ?? null, nextWindow: s.nextWindow ?? null } : null,
  };
}

/** True when writing `next` would change what clients see. */
export function statusChanged(old: MailContinuityStatus | undefined, next: MailContinuityStatus): boolean {
  return canonical(normalise(old ?? {})) !== canonical(normalise(next));
}

function normalise(s: MailContinuityStatus) {
  return { ...s, conditions: [...(s.conditions ?? [])].sort((a, b) => a.type.localeCompare(b.type)) };
}

/** JSON with sorted keys and without undefined members: equal for semantically equal values. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}
