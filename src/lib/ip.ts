// IP addresses and CIDRs as bytes, for the acceptFrom check. IPv4-mapped IPv6
// client addresses (::ffff:192.0.2.1, as a dual-stack socket reports them) are
// compared as the IPv4 address they carry.
import { isIP } from 'node:net';
import { parseCidr } from '../api/v1alpha1/formats.js';

export interface IpBytes {
  family: 4 | 6;
  bytes: Uint8Array;
}

function v4Bytes(text: string): Uint8Array | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^[0-9]{1,3}$/.test(p) || Number(p) > 255) return undefined;
    out[i] = Number(p);
  }
  return out;
}

function v6Bytes(text: string): Uint8Array | undefined {
  let t = text;
  const zone = t.indexOf('%');
  if (zone >= 0) t = t.slice(0, zone);
  // A trailing dotted quad (::ffff:1.2.3.4) becomes two hextets.
  const lastColon = t.lastIndexOf(':');
  const tail = t.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = v4Bytes(tail);
    if (!v4) return undefined;
    t = `${t.slice(0, lastColon + 1)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const halves = t.split('::');
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - rest.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...rest];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = groups[i]!;
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    const v = parseInt(g, 16);
    out[i * 2] = v >> 8;
    out[i * 2 + 1] = v & 0xff;
  }
  return out;
}

/** Parses an IP address; IPv4-mapped IPv6 addresses come back as IPv4. */
export function parseIp(text: string): IpBytes | undefined {
  const family = isIP(text.includes('%') ? text.slice(0, text.indexOf('%')) : text);
  if (family === 4) {
    const bytes = v4Bytes(text);
    return bytes && { family: 4, bytes };
  }
  if (family !== 6) return undefined;
  const bytes = v6Bytes(text);
  if (!bytes) return undefined;
  const mapped = bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  return mapped ? { family: 4, bytes: bytes.slice(12) } : { family: 6, bytes };
}

export interface CidrMatcher {
  family: 4 | 6;
  bytes: Uint8Array;
  prefixLength: number;
  text: string;
}

export function compileCidrs(cidrs: readonly string[]): CidrMatcher[] {
  return cidrs.map((text) => {
    const c = parseCidr(text);
    const ip = c && parseIp(c.address);
    if (!c || !ip || ip.family !== c.family) throw new Error(`acceptFrom entry "${text}" is not a CIDR`);
    return { family: c.family, bytes: ip.bytes, prefixLength: c.prefixLength, text };
  });
}

export function cidrContains(cidr: CidrMatcher, ip: IpBytes): boolean {
  if (cidr.family !== ip.family) return false;
  let bits = cidr.prefixLength;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((cidr.bytes[i]! & mask) !== (ip.bytes[i]! & mask)) return false;
  }
  return true;
}

/** The first acceptFrom CIDR that contains `address`, or undefined (also for garbage). */
export function matchClient(cidrs: readonly CidrMatcher[], address: string): CidrMatcher | undefined {
  const ip = parseIp(address);
  if (!ip) return undefined;
  return cidrs.find((c) => cidrContains(c, ip));
}

export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  const ip = parseIp(host);
  if (!ip) return false;
  return ip.family === 4 ? ip.bytes[0] === 127 : ip.bytes.every((b, i) => b === (i === 15 ? 1 : 0));
}

/** True when a URL points at this machine: 127.0.0.0/8, ::1 or localhost. */
export function isLoopbackUrl(url: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname.toLowerCase();
  } catch {
    return false;
  }
  return host.endsWith('.localhost') || isLoopbackHost(host.replace(/^\[(.*)\]$/, '$1'));
}
