// One reader of SMTP replies (RFC 5321 4.2: "NNN-text" lines continue a reply,
// "NNN text" or "NNN" ends it), for the relay's SMTP client, the operator's
// health probe and the tests' raw SMTP client. Bytes go in as they arrive; whole
// replies come out in order, to one waiting reader at a time. What is not an
// SMTP reply (a malformed line, a line or reply over the limits) is a problem
// each user decides about: end the session, or hand it on as a reply of code 0.

export interface SmtpReply {
  code: number;
  /** The reply's lines without their line ends, as received ("250-PIPELINING", "250 SIZE 1000"). */
  lines: string[];
}

export interface SmtpReplyProblem {
  kind: 'malformed' | 'line-too-long' | 'reply-too-long';
  /** The lines of the reply so far, the offending one last (a line over the limit cut to 200 characters). */
  lines: string[];
}

export interface SmtpReplyReaderOptions {
  /** How a line's bytes are decoded (default utf8). */
  encoding?: BufferEncoding;
  /** Longest line, in bytes (default 8192; RFC 5321 allows 512). */
  maxLine?: number;
  /** Longest reply, all its lines together (default 65,536). */
  maxReply?: number;
  /**
   * What a problem becomes: an Error fails the reader (nothing more is read), a reply is
   * queued like any other (and reading goes on). Default: an Error saying what was seen.
   */
  onProblem?: (p: SmtpReplyProblem) => Error | SmtpReply;
}

/** Multi-line replies joined with spaces, as Postfix logs them ("550-5.1.1 ... 550 5.1.1 ..."). */
export const replyText = (r: SmtpReply): string => r.lines.join(' ');

export class SmtpReplyReader {
  private partial: Buffer = Buffer.alloc(0);
  private lines: string[] = [];
  private replyChars = 0;
  private readonly replies: SmtpReply[] = [];
  private waiter: { resolve: (r: SmtpReply) => void; reject: (e: Error) => void } | undefined;
  private failed: Error | undefined;
  private readonly encoding: BufferEncoding;
  private readonly maxLine: number;
  private readonly maxReply: number;
  private readonly onProblem: (p: SmtpReplyProblem) => Error | SmtpReply;

  constructor(o: SmtpReplyReaderOptions = {}) {
    this.encoding = o.encoding ?? 'utf8';
    this.maxLine = o.maxLine ?? 8192;
    this.maxReply = o.maxReply ?? 65_536;
    this.onProblem = o.onProblem ?? ((p) => new Error(`not an SMTP reply (${p.kind}): ${JSON.stringify(p.lines.at(-1)?.slice(0, 100))}`));
  }

  /** The error that ended reading, if any. */
  get failure(): Error | undefined {
    return this.failed;
  }

  /** Bytes received but not yet read as a reply (a sender must have said nothing more before a TLS upgrade). */
  pending(): boolean {
    return this.partial.length > 0 || this.lines.length > 0 || this.replies.length > 0;
  }

  push(chunk: Buffer): void {
    if (this.failed) return;
    const buf = this.partial.length > 0 ? Buffer.concat([this.partial, chunk]) : chunk;
    let start = 0;
    for (let nl = buf.indexOf(10); nl >= 0 && !this.failed; nl = buf.indexOf(10, start)) {
      const end = nl > start && buf[nl - 1] === 13 ? nl - 1 : nl;
      const bytes = end - start;
      const line = buf.toString(this.encoding, start, bytes > this.maxLine ? start + 200 : end);
      start = nl + 1;
      this.line(line, bytes);
    }
    this.partial = this.failed ? Buffer.alloc(0) : buf.subarray(start);
    if (this.partial.length > this.maxLine) {
      this.problem('line-too-long', this.partial.toString(this.encoding, 0, 200));
      this.partial = Buffer.alloc(0);
    }
  }

  /** Ends reading: the waiting reader, and every later one once the queue is empty, gets `e`. */
  fail(e: Error): void {
    if (this.failed) return;
    this.failed = e;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(e);
  }

  /** The next reply: queued ones first, then the failure if reading ended. */
  next(): Promise<SmtpReply> {
    const queued = this.replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  private line(l: string, bytes: number): void {
    if (bytes > this.maxLine) return this.problem('line-too-long', l.slice(0, 200));
    const m = /^(\d{3})([ -]|$)/.exec(l);
    if (!m) return this.problem('malformed', l);
    this.replyChars += l.length;
    if (this.replyChars > this.maxReply) return this.problem('reply-too-long', l.slice(0, 200));
    this.lines.push(l);
    if (m[2] === '-') return;
    this.complete({ code: Number(m[1]), lines: this.take() });
  }

  private problem(kind: SmtpReplyProblem['kind'], last: string): void {
    const r = this.onProblem({ kind, lines: [...this.take(), last] });
    if (r instanceof Error) this.fail(r);
    else this.complete(r);
  }

  private take(): string[] {
    const lines = this.lines;
    this.lines = [];
    this.replyChars = 0;
    return lines;
  }

  private complete(r: SmtpReply): void {
    const w = this.waiter;
    this.waiter = undefined;
    if (w) w.resolve(r);
    else this.replies.push(r);
  }
}
