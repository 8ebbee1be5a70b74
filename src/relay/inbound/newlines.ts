// Newline handling of DATA (Postfix 3.9's smtpd_forbid_bare_newline = normalize):
// bare CR and bare LF become CRLF, so the next hop only ever sees CRLF lines and
// a smuggled "\n.\n<commands>" stays message text, dot-stuffed on the way out.

/** Rewrites bare CR and bare LF to CRLF across chunk boundaries. */
export class NewlineNormaliser {
  private cr = false;
  bare = 0;

  push(chunk: Buffer): Buffer {
    // Fast path: no CR pending, every LF preceded by CR and every CR followed by LF.
    if (!this.cr && isClean(chunk)) return chunk;
    const out = Buffer.allocUnsafe(chunk.length * 2 + 2);
    let o = 0;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.cr) {
        this.cr = false;
        out[o++] = 13;
        out[o++] = 10;
        if (b === 10) continue;
        this.bare++;
      }
      if (b === 13) this.cr = true;
      else if (b === 10) {
        out[o++] = 13;
        out[o++] = 10;
        this.bare++;
      } else out[o++] = b;
    }
    return out.subarray(0, o);
  }

  end(): Buffer {
    if (!this.cr) return Buffer.alloc(0);
    this.cr = false;
    this.bare++;
    return Buffer.from('\r\n');
  }
}

function isClean(chunk: Buffer): boolean {
  if (chunk.length > 0 && chunk[chunk.length - 1] === 13) return false;
  for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) if (i === 0 || chunk[i - 1] !== 13) return false;
  for (let i = chunk.indexOf(13); i !== -1; i = chunk.indexOf(13, i + 1)) if (chunk[i + 1] !== 10) return false;
  return true;
}
