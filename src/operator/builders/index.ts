// Every child of a MailContinuity, built by pure functions from the spec.
import type { MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import type { KubeObject } from '../kube/types.js';
import { configHash, configMap, type RelayGoogle } from './config.js';
import { networkPolicy, type RelayAccess } from './network-policy.js';
import { headlessService, podDisruptionBudget, service, serviceAccount } from './network.js';
import { adminTokenSecret } from './secret.js';
import type { LogFormat } from '../../lib/log.js';
import { statefulSet } from './statefulset.js';

export * from './common.js';
export { configMap, relayConfig, configHash, type RelayGoogle } from './config.js';
export { adminTokenSecret, tokenOf } from './secret.js';
export { networkPolicy, type PeerSelector, type RelayAccess } from './network-policy.js';

export interface BuildOptions {
  defaultImage: string;
  /** Only for tests and the demo: the relays' Google clients go to these loopback URLs (relay config `google`). */
  relayGoogle?: RelayGoogle;
  /** The relays log in this format (their --log-format): the operator's own. Default json. */
  relayLogFormat?: LogFormat;
  /** The relays' admin token: the one already in the cluster, else a new one the caller drew. */
  adminToken: string;
  /** The relay StatefulSet's replicas when not spec.relay.replicas (relays draining before a scale-down). */
  relayReplicas?: number;
  /** Who may reach the relays' admin and metrics port (default: no Pod). */
  relayAccess?: RelayAccess;
}

/**
 * In apply order: what a pod needs exists before the StatefulSet that starts it, and the
 * NetworkPolicy before any relay Pod can accept a connection.
 */
export function buildChildren(mc: MailContinuity, opts: BuildOptions): KubeObject[] {
  const cm = configMap(mc, opts.relayGoogle);
  return [
    serviceAccount(mc),
    networkPolicy(mc, opts.relayAccess),
    adminTokenSecret(mc, opts.adminToken),
    cm,
    headlessService(mc),
    service(mc),
    statefulSet(mc, {
      defaultImage: opts.defaultImage,
      configHash: configHash(cm),
      replicas: opts.relayReplicas,
      logFormat: opts.relayLogFormat,
    }),
    podDisruptionBudget(mc),
  ];
}
