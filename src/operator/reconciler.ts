// Reconcile one MailContinuity, as a list of steps (CloudNativePG style):
//   1. read it from the cache; gone or being deleted -> nothing to do (the
//      children carry controller ownerReferences: the garbage collector
//      removes them);
//   2. check the Secrets it references; a missing one stalls it (a human must
//      act) until the Secret appears — the Secret informer re-enqueues it;
//   3. apply every child with server-side apply, but only those that differ
//      from what the cache holds (drift is corrected, an idle operator writes
//      nothing);
//   4. compute the status in one place and write it only when it changed.
// Reads come from the informer caches, never from the API.
import type { Logger } from 'pino';
import { MailContinuitySpec, type MailContinuity } from '../api/v1alpha1/mailcontinuity.js';
import { buildChildren, childNames, tokenOf } from './builders/index.js';
import type { EventRecorder } from './events.js';
import type { KubeClient, KubeObject } from './kube/client.js';
import type { Informer } from './kube/informer.js';
import { CHILD_TYPES, MAILCONTINUITIES } from './kube/resources.js';
import { isSubset } from './kube/subset.js';
import {
  computeStatus,
  describeSecretProblem,
  statusChanged,
  STALLED,
  type SecretProblem,
  type StatusInputs,
} from './status.js';

export interface Caches {
  mailContinuities: Informer<MailContinuity & KubeObject>;
  /** One informer per owned kind (by kind name), plus all Secrets (referenced ones included). */
  children: Record<string, Informer<KubeObject>>;
}

export interface ReconcilerDeps {
  client: KubeClient;
  caches: Caches;
  fieldManager: string;
  defaultImage: string;
  recorder: EventRecorder;
  log: Logger;
  now?: () => Date;
  /** The parts of status that other parts of the operator own (health, failover). */
  contributor?: StatusContributor;
}

/** Status parts owned by other parts of the operator, merged into the status computed here. */
export type StatusParts = Pick<StatusInputs, 'extraConditions' | 'primary' | 'lastFailover'>;

export interface StatusContributor {
  /** For a live resource (spec parsed, defaults applied, status as stored). */
  observe(mc: MailContinuity): StatusParts;
  /** The resource is gone. */
  forget(key: string): void;
}

export interface ReconcileResult {
  /** Reconcile again after this long even if nothing changes. */
  requeueAfterMs?: number;
  /** What happened, for logs and metrics. */
  outcome: 'Gone' | 'Stalled' | 'Applied' | 'UpToDate';
  writes: number;
}

/** The Secrets a spec references, with the keys the relay will read. */
export function referencedSecrets(spec: MailContinuitySpec): { field: string; name: string; keys: string[] }[] {
  const refs: { field: string; name: string; keys: string[] }[] = [];
  const sa = spec.backup.gmail.serviceAccountSecretRef;
  if (sa && spec.backup.gmail.method === 'GmailApi') {
    refs.push({ field: 'spec.backup.gmail.serviceAccountSecretRef', name: sa.name, keys: [sa.key] });
  }
  if (spec.primary.credentialsSecretRef) {
    refs.push({
      field: 'spec.primary.credentialsSecretRef',
      name: spec.primary.credentialsSecretRef.name,
      keys: ['username', 'password'],
    });
  }
  if (spec.relay.tlsSecretRef) {
    refs.push({ field: 'spec.relay.tlsSecretRef', name: spec.relay.tlsSecretRef.name, keys: ['tls.crt', 'tls.key'] });
  }
  return refs;
}

/** The relays' admin token of mc, from the operator's Secret in the cache (undefined until it exists). */
export function adminToken(caches: Pick<Caches, 'children'>, mc: MailContinuity): string | undefined {
  return tokenOf(
    caches.children.Secret!.get(mc.metadata.namespace, childNames(mc).adminToken) as
      | { data?: Record<string, string> }
      | undefined,
  );
}

export class Reconciler {
  constructor(private readonly deps: ReconcilerDeps) {}

  async reconcile(namespace: string, name: string): Promise<ReconcileResult> {
    const { caches, log } = this.deps;
    const cached = caches.mailContinuities.get(namespace, name);
    if (!cached || cached.metadata.deletionTimestamp) {
      this.deps.contributor?.forget(`${namespace}/${name}`);
      return { outcome: 'Gone', writes: 0 };
    }

    // The CRD schema validated the spec; parsing fills in the defaults for objects
    // written before a default existed.
    const parsed = MailContinuitySpec.safeParse(cached.spec);
    if (!parsed.success) {
      const message = parsed.error.issues.map((i) => `spec.${i.path.join('.')}: ${i.message}`).join('; ');
      log.error({ key: `${namespace}/${name}`, message }, 'invalid spec');
      return { outcome: 'Stalled', writes: await this.writeStatus(cached, [], {}, `invalid spec: ${message}`) };
    }
    const mc: MailContinuity = { ...cached, spec: parsed.data };
    // Health and failover go on whatever else is wrong: the relay may be running.
    const parts = this.deps.contributor?.observe(mc) ?? {};

    const problems = this.checkSecrets(mc);
    if (problems.length > 0) {
      const wasStalled = cached.status?.conditions?.some((c) => c.type === STALLED && c.status === 'True');
      if (!wasStalled) {
        const message = problems.map((p) => describeSecretProblem(p, namespace)).join('; ');
        await this.deps.recorder.record(
          mc,
          'Warning',
          problems[0]!.missingKey ? 'SecretKeyMissing' : 'SecretNotFound',
          message,
        );
      }
      return { outcome: 'Stalled', writes: await this.writeStatus(mc, problems, parts) };
    }

    let writes = 0;
    let applyError: string | undefined;
    try {
      writes += await this.applyChildren(mc);
    } catch (err) {
      applyError = (err as Error).message;
    }
    writes += await this.writeStatus(mc, [], parts, undefined, applyError);
    if (applyError) throw new Error(applyError);
    return { outcome: writes > 0 ? 'Applied' : 'UpToDate', writes };
  }

  private checkSecrets(mc: MailContinuity): SecretProblem[] {
    const secrets = this.deps.caches.children.Secret!;
    const problems: SecretProblem[] = [];
    for (const ref of referencedSecrets(mc.spec)) {
      const secret = secrets.get(mc.metadata.namespace, ref.name) as { data?: Record<string, string> } | undefined;
      if (!secret) {
        problems.push({ field: ref.field, name: ref.name });
        continue;
      }
      const missing = ref.keys.find((k) => secret.data?.[k] === undefined);
      if (missing) problems.push({ field: ref.field, name: ref.name, missingKey: missing });
    }
    return problems;
  }

  /** Applies the children that are missing or differ from the cache; returns the number of writes. */
  private async applyChildren(mc: MailContinuity): Promise<number> {
    const { caches, client, fieldManager } = this.deps;
    const ns = mc.metadata.namespace;
    const existingToken = adminToken(caches, mc);
    let writes = 0;
    for (const child of buildChildren(mc, { defaultImage: this.deps.defaultImage, adminToken: existingToken })) {
      const type = CHILD_TYPES[child.kind]!;
      const current = caches.children[child.kind]!.get(ns, child.metadata.name);
      if (current && isSubset(child, current)) continue;
      this.deps.log.info(
        {
          key: `${ns}/${mc.metadata.name}`,
          kind: child.kind,
          name: child.metadata.name,
          reason: current ? 'drift' : 'missing',
        },
        'applying child',
      );
      await client.apply(type, child, fieldManager);
      writes += 1;
    }
    return writes;
  }

  private async writeStatus(
    mc: MailContinuity,
    secretProblems: SecretProblem[],
    parts: StatusParts,
    invalid?: string,
    applyError?: string,
  ): Promise<number> {
    const ns = mc.metadata.namespace;
    const sts = this.deps.caches.children.StatefulSet!.get(ns, childNames(mc).statefulSet) as
      | { metadata: { generation?: number }; status?: Record<string, number> }
      | undefined;
    const status = computeStatus({
      mc,
      secretProblems,
      invalidSpec: invalid,
      applyError,
      statefulSet: sts && { ...sts.status, generation: sts.metadata.generation },
      ...parts,
      now: (this.deps.now ?? (() => new Date()))(),
    });
    if (!statusChanged(mc.status, status)) return 0;
    await this.deps.client.mergePatch(MAILCONTINUITIES, ns, mc.metadata.name, { status }, 'status');
    return 1;
  }
}
