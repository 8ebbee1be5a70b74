// The header section of an incoming message: collected from the first chunks
// of DATA (up to MAX_HEADER_BYTES), parsed for the policy's header rules and
// the Message-ID, which is added when the sender gave none. Whether the
// section fits is decided on its bytes alone, never on how TCP split them.

import { UNEVALUATED } from '../policy/exclusions.js';

/**
 * A header section must end within this many bytes to be evaluated by the
 * policy; a longer one is passed on as it came, and the message never gets a
 * copy at the backup (Postfix's header_size_limit is 100 KiB).
 */
export const MAX_HEADER_BYTES = 1024 * 1024;

/** Header values the queue file keeps for the policy, in all (beyond: not evaluated, no backup copy). */
export const MAX_KEPT_HEADER_BYTES = 256 * 1024;

/** Parses a CRLF header block into [lower-case name, unfolded value]. */
export function parseHeaders(block: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const line of block.split('\r\n')) {
    if (line === '') continue;
    if ((line[0] === ' ' || line[0] === '\t') && out.length > 0) {
      out[out.length - 1]![1] += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    out.push([line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()]);
  }
  return out;
}

export interface HeaderSection {
  /** Every byte collected (the header section and whatever of the body came with it). */
  bytes: Buffer;
  /** The header section as text (up to the last whole line within the limit when it did not fit). */
  block: string;
  /** False when the section did not end within MAX_HEADER_BYTES. */
  complete: boolean;
}

const END = Buffer.from('\r\n\r\n');

/** Collects DATA (newlines already CRLF) until the header section ends or passes the limit. */
export class HeaderCollector {
  private chunks: Buffer[] = [];
  private length = 0;
  /** The last bytes seen (at most 3): an end split across chunks. */
  private tail = Buffer.alloc(0);
  private result: HeaderSection | undefined;

  constructor(private readonly limit = MAX_HEADER_BYTES) {}

  /** Adds a chunk; the section once it is decided (then the caller stops pushing). Each byte is searched once. */
  push(chunk: Buffer): HeaderSection | undefined {
    const window = this.tail.length ? Buffer.concat([this.tail, chunk]) : chunk;
    const base = this.length - this.tail.length;
    const startLength = this.length;
    this.chunks.push(chunk);
    this.length += chunk.length;
    this.tail = Buffer.from(window.subarray(Math.max(0, window.length - 3)));
    if (startLength < 2 && this.length >= 2) {
      const head = Buffer.concat(this.chunks).subarray(0, 2);
      if (head[0] === 0x0d && head[1] === 0x0a) return this.done(0, true);
    }
    const at = window.indexOf(END);
    if (at >= 0) return this.done(base + at + 2, base + at + 4 <= this.limit);
    if (this.length >= this.limit) return this.done(-1, false);
    return undefined;
  }

  /** The data ended: the section is whatever came (a message may be all headers). */
  end(): HeaderSection {
    return this.result ?? this.done(this.length, this.length <= this.limit);
  }

  private done(headerEnd: number, complete: boolean): HeaderSection {
    const all = Buffer.concat(this.chunks);
    this.chunks = [];
    const cut = all.subarray(0, this.limit).lastIndexOf('\r\n');
    const stop = complete ? headerEnd : cut < 0 ? 0 : cut + 2;
    this.result = { bytes: all, block: all.subarray(0, stop).toString('utf8'), complete };
    return this.result;
  }
}

/** The Message-ID without its angle brackets (at most 998 characters), if there is one. */
export function messageIdOf(headers: Array<[string, string]>): string | undefined {
  const mid = headers.find(([n]) => n === 'message-id')?.[1];
  return mid?.replace(/^\s*<|>\s*$/g, '').slice(0, 998) || undefined;
}

/**
 * The header fields the queue file keeps for the policy: every occurrence of
 * the names the rules ask for, or the UNEVALUATED marker (no backup copy) when
 * the section did not fit MAX_HEADER_BYTES or those fields exceed MAX_KEPT_HEADER_BYTES.
 */
export function policyHeaders(headers: Array<[string, string]>, complete: boolean, interesting: ReadonlySet<string>): Array<[string, string]> {
  if (!complete) return [[UNEVALUATED, `header section over ${MAX_HEADER_BYTES} bytes`]];
  const kept = headers.filter(([n]) => interesting.has(n));
  const bytes = kept.reduce((sum, [n, v]) => sum + n.length + v.length, 0);
  if (bytes > MAX_KEPT_HEADER_BYTES) return [[UNEVALUATED, `header fields the rules name over ${MAX_KEPT_HEADER_BYTES} bytes`]];
  return kept;
}
