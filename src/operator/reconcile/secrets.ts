// The Secrets a MailContinuity references, and what is wrong with them: pure
// functions over the spec and the Secrets as the cache holds them.
import type { MailContinuitySpec } from '../../api/v1alpha1/mailcontinuity.js';
import type { SecretProblem } from '../status.js';

export interface SecretRef {
  field: string;
  name: string;
  /** The keys the relay will read. */
  keys: string[];
}

export type SecretData = { data?: Record<string, string> } | undefined;

/** The Secrets a spec references, with the keys the relay will read. */
export function referencedSecrets(spec: MailContinuitySpec): SecretRef[] {
  const refs: SecretRef[] = [];
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
  if (spec.primary.caSecretRef) {
    refs.push({ field: 'spec.primary.caSecretRef', name: spec.primary.caSecretRef.name, keys: [spec.primary.caSecretRef.key] });
  }
  if (spec.relay.tlsSecretRef) {
    refs.push({ field: 'spec.relay.tlsSecretRef', name: spec.relay.tlsSecretRef.name, keys: ['tls.crt', 'tls.key'] });
  }
  return refs;
}

/** A missing Secret, or a missing key, per reference (secrets: by name, as gathered). */
export function secretProblems(refs: SecretRef[], secrets: ReadonlyMap<string, SecretData>): SecretProblem[] {
  const problems: SecretProblem[] = [];
  for (const ref of refs) {
    const secret = secrets.get(ref.name);
    if (!secret) {
      problems.push({ field: ref.field, name: ref.name });
      continue;
    }
    const missing = ref.keys.find((k) => secret.data?.[k] === undefined);
    if (missing) problems.push({ field: ref.field, name: ref.name, missingKey: missing });
  }
  return problems;
}

/**
 * spec.primary as the operator's probes use it: with caSecretRef, the PEM of
 * its key (as gathered) in caBundle, so the probes trust what the relay trusts.
 * A missing Secret or key leaves caBundle unset (and stalls the resource).
 */
export function probedPrimary(spec: MailContinuitySpec, secrets: ReadonlyMap<string, SecretData>): MailContinuitySpec['primary'] {
  const ref = spec.primary.caSecretRef;
  const data = ref ? secrets.get(ref.name)?.data?.[ref.key] : undefined;
  return data === undefined ? spec.primary : { ...spec.primary, caBundle: Buffer.from(data, 'base64').toString('utf8') };
}
