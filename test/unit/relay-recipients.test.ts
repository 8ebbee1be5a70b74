import { describe, expect, it } from '@jest/globals';
import { listHas, parseRecipientList } from '../../src/relay/policy/recipients.js';

describe('recipient list (spec.relay.recipients)', () => {
  const list = parseRecipientList('# mailboxes\nAlice@Corp.Example.com\n  bob@corp.example.com  # team lead\n\n@shared.example.com\n"carol"@corp.example.com\n', 'test');

  it('addresses compare canonical and case-insensitive; "@domain" takes every local part', () => {
    expect(listHas(list, 'alice@corp.example.com')).toBe(true);
    expect(listHas(list, 'ALICE@CORP.EXAMPLE.COM.')).toBe(true);
    expect(listHas(list, 'bob@corp.example.com')).toBe(true);
    expect(listHas(list, 'carol@corp.example.com')).toBe(true);
    expect(listHas(list, '"alice"@corp.example.com')).toBe(true);
    expect(listHas(list, 'anyone@shared.example.com')).toBe(true);
    expect(listHas(list, 'mallory@corp.example.com')).toBe(false);
    expect(listHas(list, 'alice@sub.corp.example.com')).toBe(false);
  });

  it('an entry that is not an address names its line', () => {
    expect(() => parseRecipientList('alice@corp.example.com\nnot an address\n', 'the list')).toThrow('the list line 2: "not an address" is not an address or "@domain"');
    expect(() => parseRecipientList('alice@\n', 'x')).toThrow(/line 1/);
  });
});
