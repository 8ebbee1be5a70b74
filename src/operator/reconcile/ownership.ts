// Children the operator does not own. Server-side apply with force would take
// over any object that already has a child's name — a `<name>-relay-admin`
// Secret planted with a token its author knows, a StatefulSet, a Service — and
// the relays would then trust it. The operator adopts nothing: an object with a
// child's name and no controller ownerReference to this MailContinuity (by UID)
// stalls the resource, naming the object and the fix. Pure.
import type { MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import type { PlannedEvent } from '../failover/plan.js';
import type { KubeObject } from '../kube/types.js';
import { STALLED, type Stall } from '../status.js';

export const CHILD_NOT_OWNED = 'ChildNotOwned';

/** Whether obj's controller ownerReference is mc (by UID, not by name). */
export function controlledBy(obj: KubeObject, mc: MailContinuity): boolean {
  const uid = mc.metadata.uid;
  return uid !== undefined && (obj.metadata.ownerReferences ?? []).some((r) => r.controller === true && r.uid === uid);
}

/** The Stall for the objects among `found` that have a child's name but are not mc's (undefined: none). */
export function notOwnedStall(mc: MailContinuity, found: KubeObject[]): Stall | undefined {
  const foreign = found.filter((o) => !controlledBy(o, mc));
  if (foreign.length === 0) return undefined;
  const ns = mc.metadata.namespace;
  const names = foreign.map((o) => `${o.kind} ${ns}/${o.metadata.name}`).join(', ');
  return {
    reason: CHILD_NOT_OWNED,
    message:
      `${names} already exist${foreign.length === 1 ? 's' : ''} and ${foreign.length === 1 ? 'is' : 'are'} not owned by ` +
      `MailContinuity ${ns}/${mc.metadata.name}: the operator adopts no object it did not create. ` +
      `Delete ${foreign.length === 1 ? 'it' : 'them'} (the operator then creates its own) or give the MailContinuity another name`,
  };
}

/** The Warning Event of a stall, unless the resource already stood stalled for the same reason. */
export function stallEvent(mc: MailContinuity, stall: Stall): PlannedEvent | undefined {
  const already = mc.status?.conditions?.some((c) => c.type === STALLED && c.status === 'True' && c.reason === stall.reason);
  return already ? undefined : { type: 'Warning', reason: stall.reason, message: stall.message };
}
