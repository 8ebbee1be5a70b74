import { describe, expect, it } from '@jest/globals';
import { SmtpReplyReader, replyText, type SmtpReply } from '../../src/lib/smtp-reply.js';

const feed = (r: SmtpReplyReader, ...chunks: string[]) => chunks.forEach((c) => r.push(Buffer.from(c, 'latin1')));

describe('SmtpReplyReader', () => {
  it('reads single and multi-line replies, split anywhere, in order', async () => {
    const r = new SmtpReplyReader();
    feed(r, '220 mx ready\r\n250-mx\r', '\n250-PIPELINING\r\n25', '0 SIZE 1000\r\n354\r\n');
    expect(await r.next()).toEqual({ code: 220, lines: ['220 mx ready'] });
    const ehlo = await r.next();
    expect(ehlo).toEqual({ code: 250, lines: ['250-mx', '250-PIPELINING', '250 SIZE 1000'] });
    expect(replyText(ehlo)).toBe('250-mx 250-PIPELINING 250 SIZE 1000');
    expect(await r.next()).toEqual({ code: 354, lines: ['354'] });
    expect(r.pending()).toBe(false);
  });

  it('a waiting reader gets the reply when it arrives; pending() sees bytes not yet read', async () => {
    const r = new SmtpReplyReader();
    const next = r.next();
    feed(r, '250 ok\r\n');
    expect((await next).code).toBe(250);
    feed(r, '250-partial');
    expect(r.pending()).toBe(true);
  });

  it('after fail(): queued replies first, then the error', async () => {
    const r = new SmtpReplyReader();
    feed(r, '250 ok\r\n');
    r.fail(new Error('closed'));
    expect((await r.next()).code).toBe(250);
    await expect(r.next()).rejects.toThrow('closed');
  });

  it('a malformed line fails the reader by default', async () => {
    const r = new SmtpReplyReader();
    const next = r.next();
    feed(r, 'HTTP/1.1 400 Bad Request\r\n');
    await expect(next).rejects.toThrow(/malformed/);
    expect(r.failure).toBeInstanceOf(Error);
  });

  it('onProblem may turn a problem into a reply of code 0 and read on', async () => {
    const r = new SmtpReplyReader({ encoding: 'latin1', onProblem: (p): SmtpReply => ({ code: 0, lines: p.lines }) });
    feed(r, '220-first\r\nnot smtp\r\n220 fine\r\n');
    expect(await r.next()).toEqual({ code: 0, lines: ['220-first', 'not smtp'] });
    expect((await r.next()).code).toBe(220);
  });

  it('a line over maxLine (with or without its line end) and a reply over maxReply are problems', async () => {
    const kinds: string[] = [];
    const r = new SmtpReplyReader({ maxLine: 20, maxReply: 30, onProblem: (p) => (kinds.push(p.kind), { code: 0, lines: p.lines }) });
    feed(r, `250 ${'x'.repeat(30)}\r\n`);
    feed(r, '250-aaaaaaaaaaaa\r\n250-bbbbbbbbbbbb\r\n250 c\r\n');
    feed(r, `250 ${'y'.repeat(30)}`);
    expect(kinds).toEqual(['line-too-long', 'reply-too-long', 'line-too-long']);
  });
});
