// Parsers for the string formats of the API, shared by the schema's
// TypeScript-side checks and by the relay.
import { isIP } from 'node:net';

/** Go/Kubernetes duration units in milliseconds. */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a Go-style duration ("90s", "1h30m", "120h") into milliseconds; NaN when malformed. */
export function parseDuration(text: string): number {
  const re = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    consumed = re.lastIndex;
  }
  return text.length > 0 && consumed === text.length ? total : NaN;
}

export interface Cidr {
  family: 4 | 6;
  address: string;
  prefixLength: number;
}

/** Parses "203.0.113.0/24" or "2001:db8::/32" the way Kubernetes' CEL isCIDR() does; undefined when invalid. */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const address = text.slice(0, slash);
  const bits = text.slice(slash + 1);
  const family = isIP(address);
  if ((family !== 4 && family !== 6) || !/^(0|[1-9][0-9]*)$/.test(bits)) return undefined;
  // Kubernetes rejects IPv4-mapped IPv6 and zones in CIDRs.
  if (family === 6 && (address.includes('%') || /^::ffff:[0-9.]+$/i.test(address))) return undefined;
  const prefixLength = Number(bits);
  if (prefixLength > (family === 4 ? 32 : 128)) return undefined;
  return { family, address, prefixLength };
}

export const isCidr = (text: string): boolean => parseCidr(text) !== undefined;

/** Multipliers of the suffixes of a Kubernetes quantity (resource.Quantity). */
const QUANTITY_SUFFIX: Record<string, number> = {
  '': 1,
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/**
 * The value of a Kubernetes quantity ("250m" = 0.25, "1Gi", "1e3", or a
 * number) as a float, for comparisons; NaN when it is not one.
 */
export function parseQuantity(q: string | number): number {
  if (typeof q === 'number') return q;
  const m = /^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([KMGTPE]i|[numkMGTPE])|[eE]([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)))?$/.exec(q);
  if (!m) return NaN;
  const base = Number(m[1]);
  return m[3] !== undefined ? base * 10 ** Number(m[3]) : base * QUANTITY_SUFFIX[m[2] ?? '']!;
}
