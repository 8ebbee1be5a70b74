import { describe, expect, it } from '@jest/globals';
import { MailContinuitySpec, nameProblems } from '../../src/api/v1alpha1/mailcontinuity.js';
import { parseCidr, parseDuration, parseQuantity } from '../../src/api/v1alpha1/formats.js';
import { invalidCases, podTemplateSample, validSpec } from '../fixtures/mailcontinuity.js';

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

  it('accepts a relay podTemplate with every field', () => {
    const spec = validSpec();
    spec.relay.podTemplate = podTemplateSample();
    expect(MailContinuitySpec.safeParse(spec).error?.issues).toBeUndefined();
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
    if (c.says) expect(result.error!.issues.map((i) => i.message).join('\n')).toContain(c.says);
  });

  it('FailoverOnly without failover.messageDeadline: the documented default, 30m', () => {
    const spec = validSpec();
    delete spec.failover;
    expect(MailContinuitySpec.parse(spec).failover.messageDeadline).toBe('30m');
    expect(MailContinuitySpec.parse({ ...spec, failover: { manual: 'Active' } }).failover.messageDeadline).toBe('30m');
  });

  it('has at least 20 invalid samples', () => {
    expect(invalidCases.length).toBeGreaterThanOrEqual(20);
  });
});

describe('quantities and names', () => {
  it('accepts the quantity forms Kubernetes accepts', () => {
    const spec = validSpec();
    spec.relay.resources = {
      requests: { cpu: '250m', memory: '0.5Gi', 'ephemeral-storage': '1e9' },
      limits: { cpu: 1, memory: '512Mi', 'ephemeral-storage': '+2G' },
    };
    spec.relay.persistence = { size: 10737418240, storageClassName: 'fast.ssd-1' };
    expect(MailContinuitySpec.safeParse(spec).error?.issues).toBeUndefined();
  });

  it.each([
    ['250m', 0.25],
    ['1Gi', 2 ** 30],
    ['1.5k', 1500],
    ['1e3', 1000],
    ['.5', 0.5],
    [7, 7],
  ])('parseQuantity(%j) = %d', (q, v) => expect(parseQuantity(q)).toBeCloseTo(v));

  it.each(['lots', '1 Gi', '1gi', '', 'Gi'])('parseQuantity(%j) is NaN', (q) => expect(parseQuantity(q)).toBeNaN());

  it('names a MailContinuity whose children would get names Kubernetes refuses', () => {
    expect(nameProblems('c'.repeat(46))).toEqual([]);
    expect(nameProblems('c'.repeat(47))).toEqual([expect.stringContaining('at most 46 characters')]);
    expect(nameProblems('corp.example')).toEqual([expect.stringContaining('no dots')]);
    expect(nameProblems('1corp')).toEqual([expect.stringContaining('starts with a letter')]);
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
