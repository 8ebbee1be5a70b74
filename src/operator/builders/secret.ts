// The Secret with the token the operator presents to each relay's admin
// endpoint (failover state, replay rate). Generated once; never rotated by a
// reconcile, so relays and operator keep agreeing.
import { randomBytes } from 'node:crypto';
import type { MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import type { KubeObject } from '../kube/client.js';
import { childNames, metadata } from './common.js';

export function adminTokenSecret(mc: MailContinuity, existingToken?: string): KubeObject {
  const token = existingToken ?? randomBytes(32).toString('base64url');
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: metadata(mc, childNames(mc).adminToken),
    type: 'Opaque',
    data: { token: Buffer.from(token).toString('base64') },
  };
}

/** The token held by an admin Secret as the informer cache has it (undefined until it exists). */
export function tokenOf(secret: { data?: Record<string, string> } | undefined): string | undefined {
  const b64 = secret?.data?.token;
  return b64 ? Buffer.from(b64, 'base64').toString('utf8') : undefined;
}
