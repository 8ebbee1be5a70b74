// The gather phase of a reconcile: everything the decision needs, read from
// the informer caches and from the operator's own loops (the health probes'
// reported verdict, the failover record and the relays' numbers). Reads only:
// no API call, no write, no loop started. The one input that is not a read is
// a freshly drawn admin token, used only when the cluster holds none yet.
import { MailContinuitySpec, nameProblems, type MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import { childNames, tokenOf } from '../builders/index.js';
import { seedRecord, type FailoverRecord, type RelayTally } from '../failover/plan.js';
import type { HealthState } from '../health/hysteresis.js';
import type { PrimarySpec } from '../health/probe.js';
import type { Informer } from '../kube/informer.js';
import type { KubeObject } from '../kube/types.js';
import { controlledBy } from './ownership.js';
import type { RelayReport, ScaleDown } from './scale-down.js';
import { probedPrimary, referencedSecrets, type SecretData, type SecretRef } from './secrets.js';

export interface Caches {
  mailContinuities: Informer<MailContinuity & KubeObject>;
  /** One informer per owned kind (by kind name): the objects that carry the operator's label. */
  children: Record<string, Informer<KubeObject>>;
  /** The users' Secrets the MailContinuities reference, as last read (kube/secret-reader.ts). */
  secrets: { get(namespace: string, name: string): SecretData };
}

/** The primary's health as the probe loops last reported it. */
export interface HealthSource {
  reportedFor(key: string, primary: PrimarySpec): HealthState | undefined;
}

/** The failover record, relay numbers and scale-down the continuity sync loop holds. */
export interface FailoverSource {
  record(key: string): FailoverRecord | undefined;
  tally(key: string): RelayTally | undefined;
  relays(key: string): RelayReport[] | undefined;
  scaleDown(key: string): ScaleDown | undefined;
}

export interface GatherSources {
  caches: Caches;
  /** Absent: the primaries are not probed (PrimaryHealthy is not reported). */
  health?: HealthSource;
  failover: FailoverSource;
  /** Draws a new admin token. */
  newToken: () => string;
}

export interface Live {
  kind: 'live';
  key: string;
  /** Spec parsed (defaults applied), status as stored. */
  mc: MailContinuity;
  secretRefs: SecretRef[];
  /** The referenced Secrets by name (undefined: not in the cache). */
  secrets: Map<string, SecretData>;
  /** spec.primary as probed: with the PEM of caSecretRef in caBundle (reconcile/secrets.ts). */
  primary: PrimarySpec;
  /** Our children as the cache holds them, by `Kind/name`. */
  current: Map<string, KubeObject>;
  adminToken: string;
  probing: boolean;
  health: HealthState | undefined;
  failover: FailoverRecord;
  tally: RelayTally | undefined;
  /** Each relay's answer to the last sync, by Pod (undefined: no sync yet). */
  relays: RelayReport[] | undefined;
  /** The scale-down the previous reconciles decided (undefined: none, or the operator restarted). */
  scaleDown: ScaleDown | undefined;
}

export type Observed =
  | { kind: 'gone'; key: string }
  | { kind: 'invalid'; key: string; mc: MailContinuity; message: string }
  | Live;

export const childKey = (kind: string, name: string) => `${kind}/${name}`;

/**
 * The relays' admin token of mc, from the operator's Secret in the cache: undefined until it
 * exists, and when a Secret of that name is not mc's (its token is nobody's to trust).
 */
export function adminToken(caches: Pick<Caches, 'children'>, mc: MailContinuity): string | undefined {
  const secret = caches.children.Secret!.get(mc.metadata.namespace, childNames(mc).adminToken);
  return secret && controlledBy(secret, mc) ? tokenOf(secret as SecretData) : undefined;
}

export function gather(src: GatherSources, namespace: string, name: string): Observed {
  const key = `${namespace}/${name}`;
  const cached = src.caches.mailContinuities.get(namespace, name);
  if (!cached || cached.metadata.deletionTimestamp) return { kind: 'gone', key };

  // The CRD schema validated the spec; parsing fills in the defaults for objects
  // written before a default existed.
  const parsed = MailContinuitySpec.safeParse(cached.spec);
  if (!parsed.success) {
    const message = parsed.error.issues.map((i) => `spec.${i.path.join('.')}: ${i.message}`).join('; ');
    return { kind: 'invalid', key, mc: cached, message };
  }
  // The CRD refuses such a name since it has the rule; one stored before would
  // fail at apply, child by child: stop here, before anything is applied.
  const nameIssues = nameProblems(name);
  if (nameIssues.length > 0) return { kind: 'invalid', key, mc: cached, message: `metadata.name: ${nameIssues.join('; ')}` };
  const mc: MailContinuity = { ...cached, spec: parsed.data };
  const { children } = src.caches;

  const secretRefs = referencedSecrets(mc.spec);
  const secrets = new Map(
    secretRefs.map((r) => [r.name, src.caches.secrets.get(namespace, r.name)] as const),
  );
  const primary = probedPrimary(mc.spec, secrets);
  const current = new Map<string, KubeObject>();
  for (const childName of new Set(Object.values(childNames(mc)))) {
    for (const [kind, informer] of Object.entries(children)) {
      const obj = informer.get(namespace, childName);
      if (obj) current.set(childKey(kind, childName), obj);
    }
  }
  return {
    kind: 'live',
    key,
    mc,
    secretRefs,
    secrets,
    primary,
    current,
    adminToken: adminToken(src.caches, mc) ?? src.newToken(),
    probing: src.health !== undefined,
    health: src.health?.reportedFor(key, primary),
    failover: src.failover.record(key) ?? seedRecord(mc.status),
    tally: src.failover.tally(key),
    relays: src.failover.relays(key),
    scaleDown: src.failover.scaleDown(key),
  };
}
