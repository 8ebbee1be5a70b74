// The relay's NetworkPolicy (pure builder) and the flags that say who may
// reach the relays' admin and metrics port.
import { describe, expect, it } from '@jest/globals';
import { networkPolicy } from '../../src/operator/builders/index.js';
import { parseLabels, relayAccessFromFlags } from '../../src/operator/flags.js';
import { parsedMailContinuity } from '../fixtures/mailcontinuity.js';

const mc = parsedMailContinuity;

const OPERATOR = {
  namespace: 'mail-continuity-system',
  podLabels: { 'app.kubernetes.io/name': 'mail-continuity-operator', 'app.kubernetes.io/instance': 'mco' },
};

describe('networkPolicy', () => {
  it('selects the relay Pods, limits ingress only, SMTP from acceptFrom and HTTP from the operator', () => {
    const np = networkPolicy(mc(), { operator: OPERATOR }) as Record<string, any>;
    expect(np).toMatchObject({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'corp-relay', namespace: 'mail' } });
    expect(np.metadata.ownerReferences[0]).toMatchObject({ kind: 'MailContinuity', uid: 'u1', controller: true });
    expect(np.spec.podSelector).toEqual({
      matchLabels: { 'app.kubernetes.io/name': 'mail-continuity-relay', 'app.kubernetes.io/instance': 'corp' },
    });
    expect(np.spec.policyTypes).toEqual(['Ingress']);
    expect(np.spec.ingress).toEqual([
      {
        ports: [{ protocol: 'TCP', port: 2525 }],
        from: [{ ipBlock: { cidr: '203.0.113.0/24' } }, { ipBlock: { cidr: '2001:db8::/32' } }],
      },
      {
        ports: [{ protocol: 'TCP', port: 8080 }],
        from: [
          {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'mail-continuity-system' } },
            podSelector: { matchLabels: OPERATOR.podLabels },
          },
        ],
      },
    ]);
  });

  it('follows spec.relay.port and acceptFrom', () => {
    const np = networkPolicy(mc((s) => (s.relay = { ...s.relay, port: 10025, acceptFrom: ['0.0.0.0/0'], allowAnySource: true })), {
      operator: OPERATOR,
    }) as Record<string, any>;
    expect(np.spec.ingress[0]).toEqual({ ports: [{ protocol: 'TCP', port: 10025 }], from: [{ ipBlock: { cidr: '0.0.0.0/0' } }] });
  });

  it('with proxyProtocol admits the SMTP port from the trusted proxies (the relay checks acceptFrom on the PROXY header)', () => {
    const np = networkPolicy(mc((s) => (s.relay = { ...s.relay, proxyProtocol: { trustedProxies: ['10.0.0.0/8', 'fd00::/8'] } })), {
      operator: OPERATOR,
    }) as Record<string, any>;
    expect(np.spec.ingress[0]).toEqual({
      ports: [{ protocol: 'TCP', port: 2525 }],
      from: [{ ipBlock: { cidr: '10.0.0.0/8' } }, { ipBlock: { cidr: 'fd00::/8' } }],
    });
  });

  it('adds the metrics scraper to the HTTP port; without operator or scraper no Pod reaches it', () => {
    const scraper = { namespaceLabels: { 'kubernetes.io/metadata.name': 'monitoring' }, podLabels: { 'app.kubernetes.io/name': 'prometheus' } };
    const np = networkPolicy(mc(), { operator: OPERATOR, metricsScraper: scraper }) as Record<string, any>;
    expect(np.spec.ingress[1].from[1]).toEqual({
      namespaceSelector: { matchLabels: scraper.namespaceLabels },
      podSelector: { matchLabels: scraper.podLabels },
    });
    const closed = networkPolicy(mc()) as Record<string, any>;
    expect(closed.spec.ingress).toHaveLength(1);
    expect(closed.spec.ingress[0].ports[0].port).toBe(2525);
  });
});

describe('relay access flags', () => {
  it('parses label lists and names the flag of a bad one', () => {
    expect(parseLabels('x', 'a=b, example.com/c=d')).toEqual({ a: 'b', 'example.com/c': 'd' });
    expect(parseLabels('x', '')).toBeUndefined();
    expect(() => parseLabels('operator-pod-labels', 'a')).toThrow(/--operator-pod-labels: "a" is not a label/);
    expect(() => parseLabels('operator-pod-labels', 'a=b c')).toThrow(/--operator-pod-labels/);
  });

  it('builds the operator and scraper peers', () => {
    expect(relayAccessFromFlags({})).toEqual({});
    expect(relayAccessFromFlags({ operatorNamespace: 'ops' })).toEqual({ operator: { namespace: 'ops', podLabels: {} } });
    expect(
      relayAccessFromFlags({ operatorNamespace: 'ops', operatorPodLabels: 'app=op', scraperNamespaceLabels: 'team=obs' }),
    ).toEqual({ operator: { namespace: 'ops', podLabels: { app: 'op' } }, metricsScraper: { namespaceLabels: { team: 'obs' } } });
  });
});
