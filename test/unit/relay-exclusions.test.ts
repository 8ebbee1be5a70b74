import { describe, expect, it } from '@jest/globals';
import { MailContinuitySpec } from '../../src/api/v1alpha1/mailcontinuity.js';
import { canonicalAddress } from '../../src/relay/policy/address.js';
import { matchExclusion, MAX_MATCH_STEPS, UNEVALUATED, type MessageFacts } from '../../src/relay/policy/exclusions.js';
import { globMatch, MAX_MATCH_CHARS } from '../../src/relay/policy/glob.js';
import { readingsOf } from '../../src/relay/policy/header-values.js';
import { validSpec } from '../fixtures/mailcontinuity.js';

const facts = (over: Partial<MessageFacts> = {}): MessageFacts => ({ mailFrom: 'a@partner.example.net', headers: [], receivedAt: 1_000_000, ...over });

const rules = MailContinuitySpec.parse({
  ...validSpec(),
  policy: {
    exclude: [
      { name: 'confidential', header: { name: 'Sensitivity', value: 'Company-Confidential' } },
      { name: 'hr-to-ceo', sender: '*@hr.partner.example.net', recipient: 'ceo@corp.example.com' },
      { name: 'board', recipient: 'board@corp.example.com' },
      { name: 'secret-subject', header: { name: 'Subject', value: '*streng vertraulich*' } },
    ],
  },
}).policy.exclude;

const ruleFor = (headers: Array<[string, string]>, rcpt = 'x@corp.example.com') => matchExclusion(rules, facts({ headers }), rcpt)?.rule;

describe('globs', () => {
  it('match case-insensitively with * and ?, everything else literal', () => {
    expect(globMatch('*@HR.corp.example.com', 'boss@hr.corp.example.com')).toBe(true);
    expect(globMatch('*@hr.corp.example.com', 'boss@hrXcorp.example.com')).toBe(false);
    expect(globMatch('ceo?@corp.example.com', 'ceo1@corp.example.com')).toBe(true);
    expect(globMatch('ceo?@corp.example.com', 'ceo@corp.example.com')).toBe(false);
    expect(globMatch('a+b(c)[d]$^|-x', 'A+B(C)[D]$^|-X')).toBe(true);
    expect(globMatch('company-confidential', 'Company-Confidential')).toBe(true);
  });

  it.each([
    ['*', '', true],
    ['**', 'abc', true],
    ['a*', 'a', true],
    ['*a', 'ba', true],
    ['a*a', 'a', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'acb', false],
    ['*x*y*z*', 'xyz', true],
    ['*x*y*z*', 'zyx', false],
    ['?*?', 'ab', true],
    ['?*?', 'a', false],
    ['*ab?d*', 'xxabxabcdyy', true],
    ['*aab', 'aaab', true],
    ['*é*', 'CAFÉ', true],
    ['*😀?', 'x😀y', true],
  ])('%j against %j: %s', (glob, text, want) => {
    expect(globMatch(glob, text)).toBe(want);
  });

  it('agrees with a regular expression on random globs and values', () => {
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    const pick = (alphabet: string, len: number) => Array.from({ length: len }, () => alphabet[rnd(alphabet.length)]).join('');
    for (let i = 0; i < 3000; i++) {
      const glob = pick('ab*?', rnd(8));
      const text = pick('ab', rnd(10));
      const re = new RegExp(`^${glob.replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 's');
      expect([glob, text, globMatch(glob, text)]).toEqual([glob, text, re.test(text)]);
    }
  });

  it('segments longer than 32 characters (multi-word automaton)', () => {
    const long = 'abcdefghijklmnopqrstuvwxyz0123456789-abcdefghijklmnop';
    expect(globMatch(`*${long}*`, `xx${long}yy`)).toBe(true);
    expect(globMatch(`*${long}*`, `xx${long.slice(0, -1)}yy`)).toBe(false);
    expect(globMatch(`*a${'?'.repeat(40)}b*`, `zza${'c'.repeat(40)}bzz`)).toBe(true);
  });

  it('adversarial globs against 16 KB values take well under a millisecond each', () => {
    const value = 'x'.repeat(8000) + 'y'.repeat(8000) + 'q';
    const globs = ['*x*y*z*', '*a*a*a*a*a*a*a*a*b', `*${'x?'.repeat(20)}z*`, '*x*x*x*x*x*x*x*x*x*x*z'];
    const started = process.hrtime.bigint();
    for (const g of globs) for (let i = 0; i < 10; i++) expect(globMatch(g, value)).toBe(false);
    const perMatchMs = Number(process.hrtime.bigint() - started) / 1e6 / 40;
    expect(perMatchMs).toBeLessThan(5); // the regex-based matcher took seconds here
  });
});

describe('header readings', () => {
  it('decode RFC 2047 words, squash white space, drop comments and quotes', () => {
    expect(readingsOf('=?utf-8?q?Company-Confidential?=')).toContain('Company-Confidential');
    expect(readingsOf('=?UTF-8?B?Q29tcGFueS1Db25maWRlbnRpYWw=?=')).toContain('Company-Confidential');
    expect(readingsOf('=?utf-8?q?Company-?= =?utf-8?q?Confidential?=')).toContain('Company-Confidential');
    expect(readingsOf('Company-Confidential (do not forward)')).toContain('Company-Confidential');
    expect(readingsOf('(x) "Company-Confidential"')).toContain('Company-Confidential');
    expect(readingsOf('Company-Confidential\t  ')).toContain('Company-Confidential');
    expect(readingsOf('a \t b')).toContain('a b');
  });
});

describe('exclusions', () => {
  it('match a header by name and value glob, case-insensitively, any occurrence', () => {
    expect(ruleFor([['sensitivity', 'company-confidential']])).toBe('confidential');
    expect(ruleFor([['sensitivity', 'Personal'], ['sensitivity', 'Company-Confidential']])).toBe('confidential');
    expect(ruleFor([['sensitivity', 'Personal']])).toBeUndefined();
  });

  it.each([
    ['q-encoded', '=?utf-8?q?Company=2DConfidential?='],
    ['b-encoded', '=?iso-8859-1?b?Q29tcGFueS1Db25maWRlbnRpYWw=?='],
    ['a comment', 'Company-Confidential (internal)'],
    ['quoted', '"Company-Confidential"'],
    ['folded white space', ' Company-Confidential \t'],
    ['an encoded comment', '=?utf-8?q?Company-Confidential_=28internal=29?='],
    ['an encoded quote', '=?utf-8?b?IkNvbXBhbnktQ29uZmlkZW50aWFsIg==?='],
  ])('see through %s', (_, value) => {
    expect(ruleFor([['sensitivity', value]])).toBe('confidential');
  });

  it('match UTF-8 and encoded non-ASCII values', () => {
    expect(ruleFor([['subject', 'Q3: STRENG VERTRAULICH – bitte nicht weiterleiten']])).toBe('secret-subject');
    expect(ruleFor([['subject', '=?utf-8?q?Streng_vertraulich_=E2=80=93_Q3?=']])).toBe('secret-subject');
  });

  it('compare canonical addresses', () => {
    expect(canonicalAddress('"ceo"@Corp.Example.COM.')).toBe('ceo@corp.example.com');
    expect(canonicalAddress('"c\\eo"@corp.example.com')).toBe('ceo@corp.example.com');
    expect(canonicalAddress('"john doe"@corp.example.com')).toBe('"john doe"@corp.example.com');
    expect(matchExclusion(rules, facts(), '"board"@CORP.example.com')?.rule).toBe('board');
    expect(matchExclusion(rules, facts({ mailFrom: '"a"@HR.partner.example.net' }), '"ceo"@corp.example.com')?.rule).toBe('hr-to-ceo');
  });

  it('need every matcher of a rule to match', () => {
    expect(matchExclusion(rules, facts({ mailFrom: 'a@HR.partner.example.net' }), 'ceo@corp.example.com')?.rule).toBe('hr-to-ceo');
    expect(matchExclusion(rules, facts({ mailFrom: 'a@HR.partner.example.net' }), 'bob@corp.example.com')).toBeUndefined();
    expect(matchExclusion(rules, facts({ mailFrom: 'a@partner.example.net' }), 'ceo@corp.example.com')).toBeUndefined();
  });

  it('fail closed: an unevaluated header section or an over-long value excludes, saying why', () => {
    expect(ruleFor([[UNEVALUATED, 'header section over 1048576 bytes']])).toBe('unevaluated: header section over 1048576 bytes');
    expect(ruleFor([['sensitivity', 'x'.repeat(MAX_MATCH_CHARS + 1)]])).toMatch(/^confidential \(a Sensitivity value over 65536 characters/);
  });

  it('fail closed when "?" globs would cost more than the step budget on one message, and answer fast', () => {
    const costly = Array.from({ length: 40 }, (_, i) => ({ name: `q-${i}`, header: { name: 'X-Tag', value: `*x?${i}*` } }));
    const value = 'x'.repeat(60_000);
    const started = performance.now();
    const got = matchExclusion(costly, facts({ headers: [['x-tag', value]] }), 'x@corp.example.com')?.rule;
    expect(got).toBe(`unevaluated: the rules' "?" globs cost over ${MAX_MATCH_STEPS} steps on this message's headers`);
    expect(performance.now() - started).toBeLessThan(100);
    expect(matchExclusion(costly.slice(0, 5), facts({ headers: [['x-tag', value]] }), 'x@corp.example.com')).toBeUndefined();
  });
});

describe('envelope and header addresses', () => {
  const hr = MailContinuitySpec.parse({
    ...validSpec(),
    policy: {
      exclude: [
        { name: 'hr', sender: '*@hr.corp.example.com' },
        { name: 'ceo', recipient: 'ceo@corp.example.com' },
      ],
    },
  }).policy.exclude;
  const rule = (mailFrom: string, headers: Array<[string, string]>, rcpt = 'bob@corp.example.com') => matchExclusion(hr, facts({ mailFrom, headers }), rcpt)?.rule;

  it('a sender rule matches MAIL FROM or any address of From: or Sender: (fail closed)', () => {
    expect(rule('boss@hr.corp.example.com', [['from', 'Someone <x@partner.example.net>']])).toBe('hr');
    expect(rule('', [['from', 'HR <boss@HR.Corp.Example.com>']])).toBe('hr');
    expect(rule('bounce@lists.example.net', [['sender', 'boss@hr.corp.example.com']])).toBe('hr');
    expect(rule('x@partner.example.net', [['from', 'a@partner.example.net, "B" <b@hr.corp.example.com>']])).toBe('hr');
    expect(rule('x@partner.example.net', [['from', '=?utf-8?q?Personal_=3Cboss=40hr=2Ecorp=2Eexample=2Ecom=3E?= <x@partner.example.net>']])).toBe('hr');
    expect(rule('x@partner.example.net', [['from', '"boss"@hr.corp.example.com (the boss)']])).toBe('hr');
    expect(rule('x@partner.example.net', [['from', 'Team: boss@hr.corp.example.com;']])).toBe('hr');
    expect(rule('x@partner.example.net', [['from', `${'a'.repeat(MAX_MATCH_CHARS + 1)}`]])).toBe('hr');
    // Controls.
    expect(rule('x@partner.example.net', [['from', 'HR team <hr@partner.example.net>']])).toBeUndefined();
    expect(rule('x@partner.example.net', [['reply-to', 'boss@hr.corp.example.com']])).toBeUndefined();
    expect(rule('x@partner.example.net', [['from', 'boss@hr.corp.example.com.evil.net']])).toBeUndefined();
  });

  it('a recipient rule matches the envelope recipient whose copy is decided, not To: or Cc:', () => {
    expect(rule('x@partner.example.net', [['to', 'bob@corp.example.com']], 'ceo@corp.example.com')).toBe('ceo');
    expect(rule('x@partner.example.net', [['to', 'ceo@corp.example.com']], 'bob@corp.example.com')).toBeUndefined();
  });

  it('reads From: addresses in time linear in the value', () => {
    const hostile = [['from', `${'a'.repeat(30_000)}${'@'.repeat(2)}${'.'.repeat(30_000)}x`]] as Array<[string, string]>;
    const started = performance.now();
    for (let i = 0; i < 20; i++) matchExclusion(hr, facts({ mailFrom: 'x@partner.example.net', headers: [...hostile, ['x', String(i)]] }), 'bob@corp.example.com');
    expect(performance.now() - started).toBeLessThan(500);
  });
});
