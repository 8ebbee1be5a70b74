import { describe, expect, it } from '@jest/globals';
import { MailContinuitySpec } from '../../src/api/v1alpha1/mailcontinuity.js';
import { parseCidr, parseDuration } from '../../src/api/v1alpha1/formats.js';
import { invalidCases, validSpec } from '../fixtures/mailcontinuity.js';

/** zod's issue path in the apiserver's notation: spec.a.b[0].c */
const fieldOf = (path: PropertyKey[]) =>
  'spec' + path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');

describe('MailContinuitySpec', () => {
  it('accepts the valid sample and fills in the documented defaults', () => {
    const spec = MailContinuitySpec.parse(validSpec());
    expect(spec.primary.health).toMatchObject({
      periodSeconds: 10,
      timeoutSeconds: 5,
      failureThreshold: 3,
      successThreshold: 2,
      smtp: { enabled: true },
    });
    expect(spec.relay).toMatchObject({
      replicas: 2,
      port: 2525,
      allowAnySource: false,
      persistence: { enabled: true, size: '10Gi' },
      spool: { retention: '120h' },
      service: { type: 'ClusterIP', port: 25, externalTrafficPolicy: 'Local' },
    });
    expect(spec.backup.gmail).toMatchObject({
      labelIds: ['INBOX', 'UNREAD'],
      neverMarkSpam: false,
      serviceAccountSecretRef: { name: 'gmail-sa', key: 'credentials.json' },
    });
    expect(spec.policy.maxMessageBytes).toBe(35 * 1024 * 1024);
    expect(spec.failover.manual).toBe('Auto');
    expect(spec.recovery.maxMessagesPerSecond).toBe(20);
  });

  it('accepts DualDelivery without a messageDeadline and 0.0.0.0/0 with the opt-in', () => {
    const spec = validSpec();
    spec.mode = 'DualDelivery';
    spec.failover = {};
    spec.relay = { acceptFrom: ['0.0.0.0/0'], allowAnySource: true };
    expect(MailContinuitySpec.safeParse(spec).success).toBe(true);
  });

  it('rejects unknown fields', () => {
    const spec = { ...validSpec(), relayReplicas: 3 };
    expect(MailContinuitySpec.safeParse(spec).success).toBe(false);
  });

  it.each(invalidCases.map((c) => [c.name, c] as const))('rejects: %s, naming the field', (_name, c) => {
    const spec = validSpec() as Parameters<typeof c.mutate>[0];
    c.mutate(spec);
    const result = MailContinuitySpec.safeParse(spec);
    expect(result.success).toBe(false);
    const fields = result.error!.issues.map((i) => fieldOf(i.path));
    expect(fields).toContainEqual(expect.stringMatching(new RegExp(`^${c.field.replace(/[.[\]]/g, '\\$&')}(\\[\\d+\\])?$`)));
  });

  it('has at least 20 invalid samples', () => {
    expect(invalidCases.length).toBeGreaterThanOrEqual(20);
  });
});

describe('formats', () => {
  it.each([
    ['90s', 90_000],
    ['15m', 900_000],
    ['120h', 432_000_000],
    ['1h30m', 5_400_000],
    ['1.5h', 5_400_000],
    ['250ms', 250],
  ])('parseDuration(%s) = %d', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', '5', '5d', '1h 30m', 'm', '-1s'])('parseDuration(%j) is NaN', (text) =>
    expect(parseDuration(text)).toBeNaN(),
  );

  it.each([
    ['203.0.113.0/24', 4, 24],
    ['0.0.0.0/0', 4, 0],
    ['2001:db8::/32', 6, 32],
    ['::/0', 6, 0],
  ])('parseCidr(%s)', (text, family, prefixLength) =>
    expect(parseCidr(text)).toMatchObject({ family, prefixLength }),
  );

  it.each(['203.0.113.7', '203.0.113.0/33', '2001:db8::/129', 'anywhere/8', '10.0.0.0/08', '::ffff:1.2.3.4/128'])(
    'parseCidr(%s) is undefined',
    (text) => expect(parseCidr(text)).toBeUndefined(),
  );
});
