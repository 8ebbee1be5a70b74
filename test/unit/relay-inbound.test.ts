import { describe, expect, it } from '@jest/globals';
import { parseHeaders } from '../../src/relay/inbound/headers.js';
import { NewlineNormaliser } from '../../src/relay/inbound/newlines.js';

function normalise(chunks: string[]): { out: string; bare: number } {
  const n = new NewlineNormaliser();
  const parts = chunks.map((c) => n.push(Buffer.from(c, 'latin1')).toString('latin1'));
  parts.push(n.end().toString('latin1'));
  return { out: parts.join(''), bare: n.bare };
}

describe('NewlineNormaliser', () => {
  it('leaves CRLF text untouched (same buffer)', () => {
    const n = new NewlineNormaliser();
    const b = Buffer.from('a\r\nb\r\n');
    expect(n.push(b)).toBe(b);
    expect(n.bare).toBe(0);
  });

  it('turns bare LF and bare CR into CRLF, counting them', () => {
    expect(normalise(['a\nb\rc\r\n'])).toEqual({ out: 'a\r\nb\r\nc\r\n', bare: 2 });
  });

  it('keeps a CRLF split across chunks as one line end', () => {
    expect(normalise(['a\r', '\nb\r\n'])).toEqual({ out: 'a\r\nb\r\n', bare: 0 });
  });

  it('a CR at the very end becomes CRLF', () => {
    expect(normalise(['a\r'])).toEqual({ out: 'a\r\n', bare: 1 });
  });

  it('a smuggling attempt ends up as ordinary CRLF lines', () => {
    expect(normalise(['x\n.\nMAIL FROM:<e@evil>\r\n']).out).toBe('x\r\n.\r\nMAIL FROM:<e@evil>\r\n');
  });

  it('CR CR LF: one bare CR, one line end', () => {
    expect(normalise(['a\r\r\nb'])).toEqual({ out: 'a\r\n\r\nb', bare: 1 });
  });
});

describe('parseHeaders', () => {
  it('lower-cases names and unfolds continuation lines', () => {
    expect(parseHeaders('Subject: hello\r\n world\r\nSensitivity:  Company-Confidential \r\nX-Empty:\r\n')).toEqual([
      ['subject', 'hello world'],
      ['sensitivity', 'Company-Confidential'],
      ['x-empty', ''],
    ]);
  });

  it('ignores lines without a name', () => {
    expect(parseHeaders(': nothing\r\nno colon here\r\nA: b\r\n')).toEqual([['a', 'b']]);
  });
});
