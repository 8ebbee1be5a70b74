// How a mail client reads a header value, for the exclusion rules: the value
// unfolded, RFC 2047 encoded words decoded (libmime, the smtp-server family's
// MIME library), runs of white space as one space, and for structured values
// comments dropped and quoted strings unquoted. A rule matches when any of
// these readings matches: when in doubt, the message is kept from the backup.
import libmime from 'libmime';

// C0 controls other than tab, and DEL: mail clients do not show them.
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x08\x0a-\x1f\x7f]/g;

const squash = (s: string) => s.replace(CONTROLS, '').replace(/[ \t]+/g, ' ').trim();

/** RFC 2047 decoding; a value libmime cannot decode is read as written. */
export function decodeEncodedWords(value: string): string {
  try {
    return libmime.decodeWords(value);
  } catch {
    return value;
  }
}

/**
 * The value as a structured field reads: comments (nested, with quoted pairs)
 * replaced by a space, quoted strings without their quotes and backslashes.
 * An unclosed comment or quote runs to the end of the value, as a parser reads it.
 */
export function structuredReading(value: string): string {
  let out = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\' && (depth > 0 || quoted)) {
      if (depth === 0) out += value[i + 1] ?? '';
      i++;
    } else if (depth > 0) {
      if (c === '(') depth++;
      else if (c === ')' && --depth === 0) out += ' ';
    } else if (c === '"') quoted = !quoted;
    else if (c === '(' && !quoted) depth = 1;
    else out += c;
  }
  return out;
}

/**
 * Readings of recent values: the intake and the backup gate read the same
 * message's fields, and many messages share values (a sender's From:). Bounded:
 * values up to 1 KiB, at most 1,024 of them (about 4 MB at worst), emptied when full.
 */
const recent = new Map<string, string[]>();
const RECENT_MAX = 1024;
const RECENT_VALUE_MAX = 1024;

/** Every reading of a raw (unfolded) header value a rule is matched against, without duplicates. */
export function readingsOf(raw: string): string[] {
  if (raw.length > RECENT_VALUE_MAX) return computeReadings(raw);
  let r = recent.get(raw);
  if (!r) {
    if (recent.size >= RECENT_MAX) recent.clear();
    r = computeReadings(raw);
    recent.set(raw, r);
  }
  return r;
}

function computeReadings(raw: string): string[] {
  // Only what can change a reading is worked on: encoded words, comments, quotes.
  const decoded = raw.includes('=?') ? decodeEncodedWords(raw) : raw;
  const out = new Set([squash(raw), squash(decoded)]);
  if (/[("\\]/.test(raw) || /[("\\]/.test(decoded)) {
    out.add(squash(structuredReading(decoded)));
    out.add(squash(decodeEncodedWords(structuredReading(raw))));
  }
  return [...out];
}
