import { describe, expect, it } from '@jest/globals';
import { HeaderCollector, policyHeaders } from '../../src/relay/inbound/headers.js';
import { UNEVALUATED } from '../../src/relay/policy/exclusions.js';

/** Feeds `data` in pieces of the given sizes (cycled) and returns the decided section. */
function collect(data: Buffer, sizes: number[], limit: number) {
  const c = new HeaderCollector(limit);
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    const section = c.push(data.subarray(at, at + n));
    at += n;
    if (section) return { ...section, rest: data.subarray(at) };
  }
  return { ...c.end(), rest: Buffer.alloc(0) };
}

describe('the header section', () => {
  const limit = 4096;
  const marker = 'Sensitivity: Company-Confidential\r\n';
  const filler = (n: number) => Array.from({ length: n }, (_, i) => `X-Filler-${i}: ${'f'.repeat(50)}\r\n`).join('');

  it.each([
    ['fits', filler(10) + marker, true],
    ['ends exactly at the limit', `X-Pad: ${'p'.repeat(limit - 'X-Pad: '.length - 4)}\r\n`, true],
    ['ends one byte past the limit', `X-Pad: ${'p'.repeat(limit - 'X-Pad: '.length - 3)}\r\n`, false],
    ['passes the limit before the marker', filler(100) + marker, false],
  ])('is decided on its bytes, never on how they were split: %s', (_, head, complete) => {
    const data = Buffer.from(`${head}\r\nbody line\r\n`);
    const verdicts = new Set<string>();
    for (const sizes of [[1], [2], [3], [7, 1], [1000], [4095, 1, 2], [limit + 10], [data.length]]) {
      const s = collect(data, sizes, limit);
      expect(Buffer.concat([s.bytes, s.rest]).equals(data)).toBe(true);
      verdicts.add(JSON.stringify([s.complete, s.block]));
    }
    expect(verdicts.size).toBe(1);
    expect(JSON.parse([...verdicts][0]!)[0]).toBe(complete);
  });

  it('a message that starts with an empty line has no header section; one without a body is all headers', () => {
    expect(collect(Buffer.from('\r\nbody\r\n'), [1], limit)).toMatchObject({ block: '', complete: true });
    expect(collect(Buffer.from('Subject: x\r\n'), [3], limit)).toMatchObject({ block: 'Subject: x\r\n', complete: true });
  });

  it('keeps what the rules name, or the marker that fails closed', () => {
    const interesting = new Set(['sensitivity']);
    expect(policyHeaders([['subject', 'a'], ['sensitivity', 'b'], ['sensitivity', 'c']], true, interesting)).toEqual([['sensitivity', 'b'], ['sensitivity', 'c']]);
    expect(policyHeaders([['sensitivity', 'b']], false, interesting)[0]![0]).toBe(UNEVALUATED);
    expect(policyHeaders([['sensitivity', 'b'.repeat(300 * 1024)]], true, interesting)[0]![0]).toBe(UNEVALUATED);
  });
});
