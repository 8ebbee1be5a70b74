// The relay's NetworkPolicy: who may open a connection to a relay Pod.
//   - the SMTP port: the clients in spec.relay.acceptFrom (the relay checks
//     them too; the policy stops everyone else before the SMTP greeting), or
//     with spec.relay.proxyProtocol the trusted proxies in front of them;
//   - the HTTP port (admin endpoint, /metrics, probes): the operator's own
//     Pods, and a metrics scraper when one is configured.
// Egress is not restricted: the relay reaches Exchange, Google and DNS.
// Kubelet probes come from the node, which network plugins let through.
import type { MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import type { KubeObject } from '../kube/types.js';
import { childNames, metadata, selectorLabels } from './common.js';
import { HTTP_PORT } from './config.js';

/** Pods chosen by the labels of their namespace and their own labels (empty: any). */
export interface PeerSelector {
  namespaceLabels?: Record<string, string>;
  podLabels?: Record<string, string>;
}

/** Who may reach the relays' HTTP port (operator flags; the chart passes its own labels). */
export interface RelayAccess {
  /** The operator's namespace and Pod labels; absent: no Pod may reach the admin endpoint. */
  operator?: { namespace: string; podLabels: Record<string, string> };
  /** A metrics scraper (e.g. Prometheus); absent: none. */
  metricsScraper?: PeerSelector;
}

const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

function peer(sel: PeerSelector) {
  return {
    namespaceSelector: { matchLabels: sel.namespaceLabels ?? {} },
    podSelector: { matchLabels: sel.podLabels ?? {} },
  };
}

export function networkPolicy(mc: MailContinuity, access: RelayAccess = {}): KubeObject {
  const http = { protocol: 'TCP', port: HTTP_PORT };
  const httpPeers = [
    ...(access.operator
      ? [peer({ namespaceLabels: { [NAMESPACE_NAME_LABEL]: access.operator.namespace }, podLabels: access.operator.podLabels })]
      : []),
    ...(access.metricsScraper ? [peer(access.metricsScraper)] : []),
  ];
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: metadata(mc, childNames(mc).networkPolicy),
    spec: {
      podSelector: { matchLabels: selectorLabels(mc) },
      policyTypes: ['Ingress'],
      ingress: [
        {
          ports: [{ protocol: 'TCP', port: mc.spec.relay.port }],
          // Behind PROXY-protocol load balancers the connections come from them; the relay checks acceptFrom on the address their header carries.
          from: (mc.spec.relay.proxyProtocol?.trustedProxies ?? mc.spec.relay.acceptFrom).map((cidr) => ({ ipBlock: { cidr } })),
        },
        ...(httpPeers.length > 0 ? [{ ports: [http], from: httpPeers }] : []),
      ],
    },
  };
}
