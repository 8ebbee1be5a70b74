// Scaling the relays down without stranding mail, as a pure decision. Each
// relay replica has its own spool: a StatefulSet lowered at once would remove
// the highest ordinals with whatever they still hold (mail waiting for Exchange
// during an outage, copies waiting for Gmail) left on a PVC nobody reads. So,
// when spec.relay.replicas is below the StatefulSet's replicas:
//
//   the StatefulSet keeps its replicas; the replicas being removed (ordinals
//   >= spec.relay.replicas) are told to drain (take no new mail, /readyz 503,
//   deliver what they hold); only when every one of them answered, confirmed
//   the drain and reported nothing queued and no SMTP session open does the
//   StatefulSet get the lower count. A relay that does not answer is not
//   drained (never strand mail). A spec raised again cancels the drain.
//
// The reconcile gathers the relays' last answers (continuity.ts), this decides,
// the reconcile acts (replicas in the applied StatefulSet, the drain set handed
// to the sync loop, the Events, the Reconciling=True DrainingRelays condition).
import { relayPodName as podName } from '../builders/common.js';
import type { PlannedEvent } from '../failover/plan.js';

/** What one relay answered the sync loop last (answered false: it did not). */
export interface RelayReport {
  pod: string;
  answered: boolean;
  draining?: boolean;
  queuedPrimary?: number;
  queuedBackup?: number;
  smtpSessions?: number;
}

/** A scale-down under way (or just done), remembered between reconciles. */
export interface ScaleDown {
  from: number;
  to: number;
  done: boolean;
}

export interface ScaleInputs {
  /** The MailContinuity's name (its relay Pods are `<name>-relay-<ordinal>`). */
  name: string;
  /** spec.relay.replicas */
  desired: number;
  /** The StatefulSet's spec.replicas as the cache holds it (undefined: no StatefulSet yet). */
  current: number | undefined;
  /** The relays' answers to the last sync (undefined: no sync yet). */
  reports: RelayReport[] | undefined;
  /** What the previous reconciles decided (undefined: nothing, or the operator restarted). */
  prev: ScaleDown | undefined;
  /** The stored status says a drain is under way (an operator restart goes on from it). */
  statusDraining: boolean;
}

export interface ScalePlan {
  /** The StatefulSet's replicas to apply. */
  replicas: number;
  /** Relay Pods to tell `draining: true` (every other relay that drains is told false). */
  drain: string[];
  next: ScaleDown | undefined;
  /** While relays drain: the message of Reconciling=True / Ready=False, reason DrainingRelays. */
  draining?: { message: string };
  events: PlannedEvent[];
}

export const DRAINING_RELAYS = 'DrainingRelays';

/** The ordinal of one of name's relay Pods, or undefined. */
function ordinalOf(name: string, pod: string): number | undefined {
  const prefix = `${name}-relay-`;
  if (!pod.startsWith(prefix) || !/^\d+$/.test(pod.slice(prefix.length))) return undefined;
  return Number(pod.slice(prefix.length));
}

/** Pods that must not take mail: ordinals from `from` up, the ones being removed and any still answering above. */
function podsToDrain(i: ScaleInputs, upTo: number): string[] {
  const pods = new Set<string>();
  for (let o = i.desired; o < upTo; o++) pods.add(podName(i.name, o));
  for (const r of i.reports ?? []) if ((ordinalOf(i.name, r.pod) ?? -1) >= i.desired) pods.add(r.pod);
  return [...pods].sort((a, b) => (ordinalOf(i.name, a) ?? 0) - (ordinalOf(i.name, b) ?? 0));
}

function waitingFor(primary: number, backup: number): string {
  if (primary > 0 && backup > 0) return `holds messages waiting for the primary (${primary}) and for Gmail (${backup})`;
  return primary > 0 ? `holds ${primary} messages (waiting for the primary)` : `holds ${backup} messages (waiting for Gmail)`;
}

/** Whether pod is drained, and if not, why (a phrase that starts with the pod's name). */
export function judgeRelay(pod: string, r: RelayReport | undefined): { drained: boolean; says: string } {
  if (!r || !r.answered) return { drained: false, says: `${pod} does not answer (its spool cannot be checked)` };
  if (r.draining !== true) return { drained: false, says: `${pod} has not confirmed the drain` };
  const primary = r.queuedPrimary ?? 0;
  const backup = r.queuedBackup ?? 0;
  if (primary + backup > 0) return { drained: false, says: `${pod} ${waitingFor(primary, backup)}` };
  const sessions = r.smtpSessions ?? 0;
  if (sessions > 0) return { drained: false, says: `${pod} is empty but still has ${sessions} SMTP sessions open` };
  return { drained: true, says: `${pod} is empty` };
}

const event = (reason: string, message: string): PlannedEvent => ({ type: 'Normal', reason, message });

export function decideScale(i: ScaleInputs): ScalePlan {
  const { desired, current, prev } = i;
  if (current === undefined || desired >= current) {
    const cancelled = prev ? !prev.done : i.statusDraining;
    const from = prev?.from ?? current ?? desired;
    return {
      replicas: desired,
      drain: podsToDrain(i, desired),
      next: undefined,
      events: cancelled
        ? [event('RelayDrainCancelled', `scale-down ${from} -> ${prev?.to ?? desired} cancelled: spec.relay.replicas is ${desired}; the relays kept take mail again`)]
        : [],
    };
  }
  const drain = podsToDrain(i, current);
  // Our own scale-down, before the cache shows the StatefulSet's new replicas.
  if (prev?.done && prev.from === current && prev.to === desired) return { replicas: desired, drain, next: prev, events: [] };

  const removed = drain.filter((p) => (ordinalOf(i.name, p) ?? 0) < current);
  const byPod = new Map((i.reports ?? []).map((r) => [r.pod, r]));
  const verdicts = removed.map((p) => judgeRelay(p, byPod.get(p)));
  const started = !prev && !i.statusDraining;
  const events = started
    ? [event('RelayDrainStarted', `scaling relays ${current} -> ${desired}: draining ${removed.join(', ')} (no new mail; delivering what they hold) before their pods are removed`)]
    : [];
  if (verdicts.every((v) => v.drained)) {
    events.push(event('RelayDrainCompleted', `${removed.join(', ')} drained (nothing queued): scaling relays ${current} -> ${desired}`));
    return { replicas: desired, drain, next: { from: current, to: desired, done: true }, events };
  }
  const message = `scaling relays ${current} -> ${desired}: ${verdicts.map((v) => v.says).join('; ')}; draining relays accept no new mail and are removed once empty`;
  return { replicas: current, drain, next: { from: current, to: desired, done: false }, draining: { message }, events };
}
