// The Services in front of the relay, its PodDisruptionBudget and its
// ServiceAccount.
import type { MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import type { KubeObject } from '../kube/types.js';
import { childNames, metadata, selectorLabels } from './common.js';
import { HTTP_PORT } from './config.js';

/**
 * The relay Service. For LoadBalancer and NodePort, externalTrafficPolicy
 * defaults to Local: with Cluster, kube-proxy SNATs clients to a node
 * address, acceptFrom would see the cluster instead of the sender, and a list
 * that includes pod or node ranges becomes an open relay.
 */
export function service(mc: MailContinuity): KubeObject {
  const s = mc.spec.relay.service;
  const external = s.type !== 'ClusterIP';
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metadata(mc, childNames(mc).service),
    spec: {
      type: s.type,
      selector: selectorLabels(mc),
      ports: [{ name: 'smtp', port: s.port, targetPort: 'smtp', protocol: 'TCP' }],
      ...(external ? { externalTrafficPolicy: s.externalTrafficPolicy } : {}),
      ...(s.type === 'LoadBalancer' && s.loadBalancerSourceRanges.length > 0
        ? { loadBalancerSourceRanges: s.loadBalancerSourceRanges }
        : {}),
    },
  };
}

/** Headless Service: stable pod DNS names for the StatefulSet, and the operator's way to each relay's admin port. */
export function headlessService(mc: MailContinuity): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: metadata(mc, childNames(mc).headlessService),
    spec: {
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: selectorLabels(mc),
      ports: [
        { name: 'smtp', port: mc.spec.relay.port, targetPort: 'smtp', protocol: 'TCP' },
        { name: 'http', port: HTTP_PORT, targetPort: 'http', protocol: 'TCP' },
      ],
    },
  };
}

/** At most one relay pod down for voluntary disruptions (drains, upgrades). */
export function podDisruptionBudget(mc: MailContinuity): KubeObject {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: metadata(mc, childNames(mc).pdb),
    spec: {
      maxUnavailable: 1,
      selector: { matchLabels: selectorLabels(mc) },
      unhealthyPodEvictionPolicy: 'AlwaysAllow',
    },
  };
}

/** The relay needs no Kubernetes API access: its own ServiceAccount, no token mounted. */
export function serviceAccount(mc: MailContinuity): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: metadata(mc, childNames(mc).serviceAccount),
    automountServiceAccountToken: false,
  };
}
