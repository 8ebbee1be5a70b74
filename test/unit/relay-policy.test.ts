import { describe, expect, it } from '@jest/globals';
import { MailContinuitySpec } from '../../src/api/v1alpha1/mailcontinuity.js';
import { checkRecipient, decideBackup, type MessageFacts } from '../../src/relay/policy/policy.js';
import { gateNeeded } from '../../src/relay/scheduler/backup-gate.js';
import { compileCidrs, matchClient, parseIp } from '../../src/lib/ip.js';
import { validSpec } from '../fixtures/mailcontinuity.js';

const domains = new Set(['corp.example.com', 'example.org']);

function spec(over: Record<string, unknown> = {}) {
  return MailContinuitySpec.parse({ ...validSpec(), ...over });
}

const facts = (over: Partial<MessageFacts> = {}): MessageFacts => ({ mailFrom: 'a@partner.example.net', headers: [], receivedAt: 1_000_000, ...over });

describe('checkRecipient', () => {
  it.each([
    ['alice@corp.example.com', 'alice@corp.example.com'],
    ['Alice.Smith@CORP.Example.COM', 'Alice.Smith@corp.example.com'],
    ['x+tag@example.org', 'x+tag@example.org'],
    ['"john doe"@corp.example.com', '"john doe"@corp.example.com'],
  ])('accepts %s', (input, normalised) => {
    expect(checkRecipient(input, domains)).toEqual({ ok: true, address: normalised });
  });

  it.each([
    'alice@evil.net',
    'alice@corp.example.com.evil.net',
    'alice@evilcorp.example.com',
    'alice@sub.corp.example.com',
    'alice@corp.example.com.',
    'victim%evil.net@corp.example.com',
    'evil.net!victim@corp.example.com',
    '@corp.example.com:victim@evil.net',
    '"victim@evil.net"@corp.example.com',
    '"a%b"@corp.example.com',
    'alice@[127.0.0.1]',
    'alice',
    '',
    'al ice@corp.example.com',
    'alice@corp.example.com\u0000',
    'a..b@corp.example.com',
  ])('refuses %j', (input) => {
    expect(checkRecipient(input, domains).ok).toBe(false);
  });
});

describe('decideBackup', () => {
  const ctx = { failoverActive: false, now: 1_000_000, primaryDelivered: false };
  const confidential = facts({ headers: [['sensitivity', 'Company-Confidential']] });

  it('DualDelivery: always a copy, unless excluded (even after the primary has it)', () => {
    const s = spec({ mode: 'DualDelivery' });
    expect(decideBackup(s, facts(), 'a@corp.example.com', ctx)).toEqual({ copy: true, reason: 'dual-delivery' });
    expect(decideBackup(s, facts(), 'a@corp.example.com', { ...ctx, primaryDelivered: true })).toEqual({ copy: true, reason: 'dual-delivery' });
    expect(decideBackup(s, confidential, 'a@corp.example.com', ctx)).toEqual({ copy: false, reason: 'excluded', rule: 'confidential' });
  });

  it('FailoverOnly: no copy normally; a copy while failover is active or manual Active', () => {
    const s = spec({ mode: 'FailoverOnly' });
    expect(decideBackup(s, facts(), 'a@corp.example.com', ctx)).toEqual({ copy: false, reason: 'not-needed' });
    expect(decideBackup(s, facts(), 'a@corp.example.com', { ...ctx, failoverActive: true })).toEqual({ copy: true, reason: 'failover-active' });
    const manual = spec({ mode: 'FailoverOnly', failover: { messageDeadline: '15m', manual: 'Active' } });
    expect(decideBackup(manual, facts(), 'a@corp.example.com', ctx)).toEqual({ copy: true, reason: 'failover-active' });
  });

  it('FailoverOnly: a copy once the message waited messageDeadline for the primary, not a millisecond before', () => {
    const s = spec({ mode: 'FailoverOnly', failover: { messageDeadline: '15m' } });
    const at = (ms: number) => decideBackup(s, facts(), 'a@corp.example.com', { ...ctx, now: 1_000_000 + ms });
    expect(at(15 * 60_000 - 1)).toEqual({ copy: false, reason: 'not-needed' });
    expect(at(15 * 60_000)).toEqual({ copy: true, reason: 'message-deadline' });
  });

  it('FailoverOnly: a recipient the working primary defers alone (4xx to RCPT TO) is withheld after the deadline, unless copyRecipientDeferrals; a failover copies it', () => {
    const late = { ...ctx, now: 1_000_000 + 15 * 60_000, primaryRecipientDeferral: true };
    const s = spec({ mode: 'FailoverOnly', failover: { messageDeadline: '15m' } });
    expect(decideBackup(s, facts(), 'a@corp.example.com', late)).toEqual({ copy: false, reason: 'withheld', detail: expect.stringMatching(/^message-deadline passed but the primary answers and defers only this recipient/) });
    expect(decideBackup(s, facts(), 'a@corp.example.com', { ...late, primaryRecipientDeferral: false })).toEqual({ copy: true, reason: 'message-deadline' });
    expect(decideBackup(s, facts(), 'a@corp.example.com', { ...late, failoverActive: true })).toEqual({ copy: true, reason: 'failover-active' });
    const optIn = spec({ mode: 'FailoverOnly', failover: { messageDeadline: '15m', copyRecipientDeferrals: true } });
    expect(decideBackup(optIn, facts(), 'a@corp.example.com', late)).toEqual({ copy: true, reason: 'message-deadline' });
    expect(decideBackup(s, confidential, 'a@corp.example.com', late)).toEqual({ copy: false, reason: 'withheld', detail: expect.any(String) });
  });

  it('FailoverOnly: no copy once the primary is done with the recipient, even in failover', () => {
    const s = spec({ mode: 'FailoverOnly' });
    expect(decideBackup(s, facts(), 'a@corp.example.com', { ...ctx, failoverActive: true, primaryDelivered: true })).toEqual({ copy: false, reason: 'primary-delivered' });
  });

  it('FailoverOnly: exclusions win during failover and after the deadline, and are reported only then', () => {
    const s = spec({ mode: 'FailoverOnly' });
    expect(decideBackup(s, confidential, 'a@corp.example.com', ctx)).toEqual({ copy: false, reason: 'not-needed' });
    expect(decideBackup(s, confidential, 'a@corp.example.com', { ...ctx, failoverActive: true })).toEqual({ copy: false, reason: 'excluded', rule: 'confidential' });
    expect(decideBackup(s, confidential, 'a@corp.example.com', { ...ctx, now: 1_000_000 + 3_600_000 })).toEqual({ copy: false, reason: 'excluded', rule: 'confidential' });
  });
});

describe('gateNeeded', () => {
  const rules = (names: string[]) => spec({ mode: 'DualDelivery', policy: { exclude: names.map((name, i) => ({ name: `r${i}`, header: { name, value: 'x' } })) } }).policy.exclude;
  it('decides again what an earlier process decided, not what this one took, unless a rule names a field the relay writes', () => {
    expect(gateNeeded(rules(['Sensitivity']), false)).toBe(true);
    expect(gateNeeded(rules(['Sensitivity']), true)).toBe(false);
    expect(gateNeeded(rules(['Sensitivity', 'RECEIVED']), true)).toBe(true);
    expect(gateNeeded(rules(['Message-ID']), true)).toBe(true);
    expect(gateNeeded([], true)).toBe(false);
  });
});

describe('acceptFrom', () => {
  const cidrs = compileCidrs(['203.0.113.0/24', '2001:db8::/32', '10.1.2.3/32']);
  it.each([
    ['203.0.113.7', true],
    ['::ffff:203.0.113.7', true],
    ['::FFFF:cb00:7107', true],
    ['203.0.114.7', false],
    ['::ffff:203.0.114.7', false],
    ['2001:db8:1::5', true],
    ['2001:db9::5', false],
    ['10.1.2.3', true],
    ['10.1.2.4', false],
    ['garbage', false],
    ['', false],
  ])('%s -> %s', (addr, ok) => {
    expect(matchClient(cidrs, addr) !== undefined).toBe(ok);
  });
  it('parses IPv4-mapped IPv6 as IPv4', () => {
    expect(parseIp('::ffff:127.0.0.1')).toEqual({ family: 4, bytes: Uint8Array.from([127, 0, 0, 1]) });
  });
});
