// The exclusion rules' glob matcher, in time linear in the value: no
// backtracking regular expression. A glob is split at its stars into segments;
// the first is anchored at the start, the last at the end, and each one in
// between is found leftmost after the previous one (for fixed-length segments
// the leftmost match is always the right choice). The search is a bit-parallel
// Shift-And automaton, so every character of the value is looked at once per
// 32 characters of segment: `*x*y*z*` against 16 KB costs one pass.

/** Longest value a glob is matched against (longer values are not evaluated: callers fail closed). */
export const MAX_MATCH_CHARS = 64 * 1024;

const ANY = -1;

interface Segment {
  /** Lower-cased code points; ANY for "?". */
  chars: number[];
  /** Shift-And masks per code point, and the mask of "?" positions for any other one. */
  masks: Map<number, Uint32Array>;
  wild: Uint32Array;
}

export interface Glob {
  segments: Segment[];
  /** No star at all: the value must match the only segment exactly. */
  exact: boolean;
}

/** Lower-cased code points of a string: what globs and values are compared as. */
export function codePoints(s: string): number[] {
  const out: number[] = [];
  for (const ch of s.toLowerCase()) out.push(ch.codePointAt(0)!);
  return out;
}

function segment(chars: number[]): Segment {
  const words = Math.max(1, Math.ceil(chars.length / 32));
  const wild = new Uint32Array(words);
  chars.forEach((c, j) => {
    if (c === ANY) wild[j >> 5]! |= 1 << (j & 31);
  });
  const masks = new Map<number, Uint32Array>();
  chars.forEach((c, j) => {
    if (c === ANY) return;
    let m = masks.get(c);
    if (!m) masks.set(c, (m = Uint32Array.from(wild)));
    m[j >> 5]! |= 1 << (j & 31);
  });
  return { chars, masks, wild };
}

const cache = new Map<string, Glob>();

/** Compiles a case-insensitive glob: `*` any run of characters, `?` one character, anything else literal. */
export function compileGlob(glob: string): Glob {
  let g = cache.get(glob);
  if (g) return g;
  const pieces: number[][] = [[]];
  for (const c of codePoints(glob)) {
    if (c === 0x2a) pieces.push([]);
    else pieces[pieces.length - 1]!.push(c === 0x3f ? ANY : c);
  }
  g = { segments: pieces.map(segment), exact: pieces.length === 1 };
  if (cache.size > 10_000) cache.clear();
  cache.set(glob, g);
  return g;
}

function matchesAt(seg: Segment, text: readonly number[], at: number): boolean {
  const { chars } = seg;
  for (let j = 0; j < chars.length; j++) if (chars[j] !== ANY && chars[j] !== text[at + j]) return false;
  return true;
}

/** The leftmost index in [from, to) where `seg` matches wholly inside the range, or -1. */
function find(seg: Segment, text: readonly number[], from: number, to: number): number {
  const len = seg.chars.length;
  if (len === 0) return from;
  const words = seg.wild.length;
  const last = (len - 1) >> 5;
  const hit = 1 << ((len - 1) & 31);
  const d = new Uint32Array(words);
  for (let i = from; i < to; i++) {
    const mask = seg.masks.get(text[i]!) ?? seg.wild;
    let carry = 1;
    for (let w = 0; w < words; w++) {
      const old = d[w]!;
      d[w] = ((old << 1) | carry) & mask[w]!;
      carry = old >>> 31;
    }
    if (d[last]! & hit) return i - len + 1;
  }
  return -1;
}

/** Whether the value (as code points, lower-cased: see codePoints) matches the glob. */
export function matchCompiled(g: Glob, text: readonly number[]): boolean {
  const segs = g.segments;
  const first = segs[0]!;
  if (g.exact) return text.length === first.chars.length && matchesAt(first, text, 0);
  const lastSeg = segs[segs.length - 1]!;
  const end = text.length - lastSeg.chars.length;
  if (end < first.chars.length) return false;
  if (!matchesAt(first, text, 0) || !matchesAt(lastSeg, text, end)) return false;
  let pos = first.chars.length;
  for (let k = 1; k < segs.length - 1; k++) {
    const at = find(segs[k]!, text, pos, end);
    if (at < 0) return false;
    pos = at + segs[k]!.chars.length;
  }
  return true;
}

/** Convenience for one-off matches (tests, addresses): compiles and matches. */
export const globMatch = (glob: string, text: string): boolean => matchCompiled(compileGlob(glob), codePoints(text));
