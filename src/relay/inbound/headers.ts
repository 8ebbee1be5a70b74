// The header section of an incoming message: collected from the first chunks
// of DATA (up to MAX_HEADER_BYTES), parsed for the policy's header rules and
// the Message-ID, which is added when the sender gave none.

/** Headers beyond this size are not parsed (the rest is passed on as it came). */
export const MAX_HEADER_BYTES = 64 * 1024;

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

/** True once `buf` (the start of the data) holds the whole header section, or enough of it. */
export function headerSectionComplete(buf: Buffer): boolean {
  return buf.indexOf('\r\n\r\n') >= 0 || startsEmpty(buf) || buf.length > MAX_HEADER_BYTES;
}

/** The header section of `buf` as text: all of it when no empty line ends it, nothing when it starts with one. */
export function headerBlock(buf: Buffer): string {
  // A message that starts with an empty line has no header section at all.
  if (startsEmpty(buf)) return '';
  const end = buf.indexOf('\r\n\r\n');
  return end >= 0 ? buf.subarray(0, end + 2).toString('utf8') : buf.toString('utf8');
}

/** The Message-ID without its angle brackets (at most 998 characters), if there is one. */
export function messageIdOf(headers: Array<[string, string]>): string | undefined {
  const mid = headers.find(([n]) => n === 'message-id')?.[1];
  return mid?.replace(/^\s*<|>\s*$/g, '').slice(0, 998) || undefined;
}

const startsEmpty = (buf: Buffer) => buf.subarray(0, 2).toString() === '\r\n';
