// spec.relay: the relay pods, their Service, who may send through them, TLS and
// the spool.
import { z } from 'zod';
import { cidr, duration, kubeName, port, positiveQuantity, resourceRequirements, secretName, withRules } from './fields.js';
import { isCidr, parseCidr } from './formats.js';
import { podTemplate } from './pod-template.js';

const service = z
  .object({
    type: z
      .enum(['ClusterIP', 'LoadBalancer', 'NodePort'])
      .default('ClusterIP')
      .describe(
        'Type of the relay Service. ClusterIP (the default) is reachable only from inside the cluster; an MX provider or inbound edge outside it needs LoadBalancer (with loadBalancerSourceRanges) or NodePort.',
      ),
    port: port('Port of the relay Service.', 25),
    externalTrafficPolicy: z
      .enum(['Local', 'Cluster'])
      .default('Local')
      .describe(
        'For LoadBalancer and NodePort: Local keeps the client address, so acceptFrom sees the real sender. Cluster hides it behind a node address and can turn acceptFrom into an open relay.',
      ),
    loadBalancerSourceRanges: withRules(z.array(cidr).max(256).default([]), [
      {
        rule: 'self.all(c, isCIDR(c))',
        check: (v) => v.every(isCidr),
        message: 'every loadBalancerSourceRanges entry must be a CIDR such as "203.0.113.0/24"',
      },
    ]).describe('CIDRs allowed through the cloud load balancer.'),
  })
  .strict()
  .describe('How the relay is exposed.');

const persistence = z
  .object({
    enabled: z
      .boolean()
      .default(true)
      .describe(
        'Give every relay replica its own PersistentVolumeClaim for the spool. Disabled means emptyDir: mail accepted but not yet delivered is lost with the pod.',
      ),
    size: positiveQuantity('Size of each spool volume (a Kubernetes quantity above zero, e.g. "10Gi").').default('10Gi'),
    storageClassName: kubeName('StorageClass')
      .optional()
      .describe('StorageClass of the spool volumes; the cluster default when omitted.'),
  })
  .strict()
  .describe('Durable spool storage.');

const proxyProtocol = z
  .object({
    trustedProxies: withRules(z.array(cidr).min(1).max(64), [
      {
        rule: 'self.all(c, isCIDR(c))',
        check: (v) => v.every(isCidr),
        message: 'every trustedProxies entry must be a CIDR such as "10.0.0.0/8" or "2001:db8::/32"',
      },
      {
        rule: '!self.exists(c, isCIDR(c) && cidr(c).prefixLength() == 0)',
        check: (v) => !v.some((c) => parseCidr(c)?.prefixLength === 0),
        message:
          'trustedProxies contains 0.0.0.0/0 or ::/0: any client could then name the address acceptFrom checks; list the addresses of your load balancers or proxies',
      },
    ]).describe(
      'The load balancers or proxies (CIDRs) whose connections begin with a PROXY header. Only they may connect: a connection from any other address is refused (421) before it is read.',
    ),
  })
  .strict()
  .describe(
    'Take each client\'s address from the PROXY protocol header (HAProxy\'s, versions 1 and 2) that a load balancer sends: acceptFrom, the per-address limits, the Received header and the logs then see the sender, not the load balancer. Off when omitted. The NetworkPolicy then admits the SMTP port from trustedProxies instead of acceptFrom.',
  );

export const relay = withRules(
  z
    .object({
      replicas: z.number().int().min(1).max(50).default(2).describe('Number of relay pods.'),
      image: z.string().min(1).max(512).optional().describe("Relay image; the operator's own image when omitted."),
      resources: resourceRequirements.optional(),
      service: service.prefault({}),
      port: withRules(z.number().int().min(1).max(65535).default(2525), [
        {
          rule: 'self >= 1024',
          check: (v) => v >= 1024,
          message:
            'relay.port is the port the relay listens on inside its pod, 1024 or above (it does not run as root; default 2525): the port senders connect to, 25, is relay.service.port',
        },
      ]).describe(
        'Port the relay listens on inside the pod (not root, so 1024 or above; default 2525). Senders connect to relay.service.port (default 25), which the Service forwards here.',
      ),
      recipients: z
        .object({
          configMapRef: z
            .object({
              name: kubeName('ConfigMap').describe('Name of a ConfigMap in the namespace of the MailContinuity.'),
              key: z.string().min(1).max(253).regex(/^[-._a-zA-Z0-9]+$/, 'must be a ConfigMap key').default('recipients'),
            })
            .strict()
            .describe('The addresses that exist, one per line (# starts a comment); "@example.com" accepts every local part of that domain. Case does not matter.'),
        })
        .strict()
        .optional()
        .describe(
          'Recipient verification at RCPT, as an MX must: a recipient of spec.domains not in the list gets 550 5.1.1 at once (no backscatter, no dead letters filling the spool), also while Exchange is down. A change of the ConfigMap is taken without a restart. Omitted: every recipient of spec.domains is accepted and Exchange refuses unknown ones later.',
        ),
      tlsSecretRef: z
        .object({ name: secretName })
        .strict()
        .optional()
        .describe(
          'A kubernetes.io/tls Secret (e.g. from cert-manager) whose certificate the relay offers with STARTTLS.',
        ),
      requireTLS: z
        .boolean()
        .default(false)
        .describe('Refuse MAIL FROM before STARTTLS (530 5.7.0). Needs tlsSecretRef.'),
      acceptFrom: withRules(z.array(cidr).min(1).max(1024), [
        {
          rule: 'self.all(c, isCIDR(c))',
          check: (v) => v.every(isCidr),
          message: 'every acceptFrom entry must be a CIDR such as "203.0.113.0/24" or "2001:db8::/32"',
        },
      ]).describe(
        "Client networks allowed to send mail through the relay, e.g. your MX provider's ranges. Only they may connect, so the relay greets at once: no early-talker pause before the greeting (a spambot test that would cap senders opening one connection per message).",
      ),
      allowAnySource: z
        .boolean()
        .default(false)
        .describe('Allow acceptFrom to contain 0.0.0.0/0 or ::/0. The relay still takes only mail for spec.domains.'),
      proxyProtocol: proxyProtocol.optional(),
      podTemplate: podTemplate.optional(),
      persistence: persistence.prefault({}),
      spool: z
        .object({
          retention: duration(
            'How long undeliverable mail stays in the spool before it moves to the dead-letter folder (Postfix: 5 days).',
          ).default('120h'),
          deadLetters: z
            .object({
              maxSize: positiveQuantity(
                'Bytes the dead-letter folder (dead/) of each replica may hold; beyond, its oldest entries are removed. Default: a quarter of relay.persistence.size.',
              ).optional(),
              retention: duration('How long a dead letter is kept. Default: spool.retention.').optional(),
            })
            .strict()
            .prefault({})
            .describe('Limits of the dead-letter folder (mail refused for good or past the retention). Export or purge it with `mail-continuity dead export|purge`.'),
        })
        .strict()
        .prefault({})
        .describe('Spool settings.'),
    })
    .strict(),
  [
    {
      rule: 'self.allowAnySource || !self.acceptFrom.exists(c, isCIDR(c) && cidr(c).prefixLength() == 0)',
      check: (v) => v.allowAnySource || !v.acceptFrom.some((c) => parseCidr(c)?.prefixLength === 0),
      message:
        "acceptFrom contains 0.0.0.0/0 or ::/0: list your senders' networks, or set allowAnySource: true to accept any client (mail is still limited to spec.domains)",
      fieldPath: '.acceptFrom',
    },
    {
      rule: '!self.requireTLS || has(self.tlsSecretRef)',
      check: (v) => !v.requireTLS || v.tlsSecretRef !== undefined,
      message: 'requireTLS needs tlsSecretRef: the relay has no certificate to offer',
      fieldPath: '.tlsSecretRef',
      reason: 'FieldValueRequired',
    },
  ],
).describe('The SMTP relay the operator runs in front of the primary.');
