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
  /** For segments of up to 32 characters: the one-word masks of ASCII code points (a table, no Map lookup). */
  ascii: Int32Array | undefined;
}

export interface Glob {
  segments: Segment[];
  /** No star at all: the value must match the only segment exactly. */
  exact: boolean;
  /** The lower-cased text between the stars when the glob has no "?": matched with the native string search. */
  literals: string[] | undefined;
}

/** Lower-cased code points of a string: what globs and values are compared as. */
export function codePoints(s: string): number[] {
  const lower = s.toLowerCase();
  const out = new Array<number>(lower.length);
  let n = 0;
  for (let i = 0; i < lower.length; i++) {
    const c = lower.codePointAt(i)!;
    if (c > 0xffff) i++;
    out[n++] = c;
  }
  out.length = n;
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
  let ascii: Int32Array | undefined;
  if (words === 1) {
    ascii = new Int32Array(128).fill(wild[0]!);
    for (const [c, m] of masks) if (c < 128) ascii[c] = m[0]!;
  }
  return { chars, masks, wild, ascii };
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
  const literal = !pieces.some((p) => p.includes(ANY));
  g = { segments: pieces.map(segment), exact: pieces.length === 1, literals: literal ? glob.toLowerCase().split('*') : undefined };
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
  if (seg.ascii) return findShort(seg, seg.ascii, text, from, to);
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

/** find() for a segment of at most 32 characters: one machine word of state. */
function findShort(seg: Segment, ascii: Int32Array, text: readonly number[], from: number, to: number): number {
  const len = seg.chars.length;
  const hit = 1 << (len - 1);
  const wild = seg.wild[0]! | 0;
  let d = 0;
  for (let i = from; i < to; i++) {
    const c = text[i]!;
    d = ((d << 1) | 1) & (c < 128 ? ascii[c]! : (seg.masks.get(c)?.[0] ?? wild));
    if (d & hit) return i - len + 1;
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

/**
 * Matches a glob without "?" against a lower-cased value: anchored ends, then
 * each piece found leftmost by the native (linear) string search.
 */
export function matchLiterals(pieces: readonly string[], text: string): boolean {
  const first = pieces[0]!;
  if (pieces.length === 1) return text === first;
  const last = pieces[pieces.length - 1]!;
  const end = text.length - last.length;
  if (end < first.length || !text.startsWith(first) || !text.endsWith(last)) return false;
  let pos = first.length;
  for (let k = 1; k < pieces.length - 1; k++) {
    const piece = pieces[k]!;
    const at = text.indexOf(piece, pos);
    if (at < 0 || at + piece.length > end) return false;
    pos = at + piece.length;
  }
  return true;
}

/** A value prepared once for many globs: lower-cased, its code points computed only if a glob with "?" asks. */
export class MatchValue {
  readonly lower: string;
  private points: number[] | undefined;
  constructor(value: string) {
    this.lower = value.toLowerCase();
  }
  get codePoints(): number[] {
    return (this.points ??= codePoints(this.lower));
  }
}

/** Whether the value matches the glob; "?" globs run the Shift-And automaton, others the string search. */
export function matchValue(g: Glob, v: MatchValue): boolean {
  return g.literals ? matchLiterals(g.literals, v.lower) : matchCompiled(g, v.codePoints);
}

/** Convenience for one-off matches (tests, addresses): compiles and matches. */
export const globMatch = (glob: string, text: string): boolean => matchValue(compileGlob(glob), new MatchValue(text));
