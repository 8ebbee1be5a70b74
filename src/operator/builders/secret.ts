// The Secret with the token the operator presents to each relay's admin
// endpoint (failover state, replay rate). The reconciler draws the token once
// and passes the one in the cluster from then on: never rotated by a
// reconcile, so relays and operator keep agreeing. The builder draws no
// randomness of its own.
import type { MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import type { KubeObject } from '../kube/types.js';
import { childNames, metadata } from './common.js';

export function adminTokenSecret(mc: MailContinuity, token: string): KubeObject {
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
