// The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2)
// that a load balancer sends before the client's first byte, carrying the
// client's address. Pure: bytes in, a verdict out; the socket side is
// proxy-intake.ts.
//
// Version 1 is one text line, "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n",
// at most 107 bytes. Version 2 is binary: a 12-byte signature, version and
// command, family and transport, a length, the addresses, then TLVs (skipped).
// LOCAL (v2) and UNKNOWN (v1) say the connection is the proxy's own (a health
// check): the relay then uses the connection's own address, as the spec says.
import { isIP } from 'node:net';

/** Version 2's signature: \r\n\r\n\0\r\nQUIT\n. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ');
const V1_MAX = 107;
/** Version 2's 16-byte fixed part plus the longest address block and TLVs a proxy may send. */
export const V2_MAX = 16 + 65535;

export type ProxyHeader =
  /** More bytes are needed. */
  | { kind: 'incomplete' }
  /** Not a PROXY header, or a broken one: the connection is refused. */
  | { kind: 'invalid'; reason: string }
  /** A header of `length` bytes; `source` is the client (absent for LOCAL / UNKNOWN). */
  | { kind: 'header'; version: 1 | 2; length: number; source?: { address: string; port: number } };

/** Reads the header at the start of `buf` (everything received so far). */
export function parseProxyHeader(buf: Buffer): ProxyHeader {
  const v2Prefix = Math.min(buf.length, V2_SIGNATURE.length);
  if (v2Prefix > 0 && buf.subarray(0, v2Prefix).equals(V2_SIGNATURE.subarray(0, v2Prefix))) {
    return buf.length < 16 ? { kind: 'incomplete' } : parseV2(buf);
  }
  const v1Prefix = Math.min(buf.length, V1_PREFIX.length);
  if (!buf.subarray(0, v1Prefix).equals(V1_PREFIX.subarray(0, v1Prefix))) {
    return { kind: 'invalid', reason: 'no PROXY protocol header (neither version 1 nor 2)' };
  }
  const end = buf.indexOf('\r\n');
  if (end === -1) {
    return buf.length >= V1_MAX ? { kind: 'invalid', reason: `PROXY v1 line longer than ${V1_MAX} bytes` } : { kind: 'incomplete' };
  }
  if (end + 2 > V1_MAX) return { kind: 'invalid', reason: `PROXY v1 line longer than ${V1_MAX} bytes` };
  return parseV1(buf.subarray(0, end).toString('latin1'), end + 2);
}

function parseV1(line: string, length: number): ProxyHeader {
  const parts = line.split(' ');
  const proto = parts[1];
  if (proto === 'UNKNOWN') return { kind: 'header', version: 1, length };
  if ((proto !== 'TCP4' && proto !== 'TCP6') || parts.length !== 6) {
    return { kind: 'invalid', reason: `PROXY v1 line not "PROXY TCP4|TCP6 src dst sport dport": ${JSON.stringify(line.slice(0, 120))}` };
  }
  const [, , src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  const family = proto === 'TCP4' ? 4 : 6;
  if (isIP(src) !== family || isIP(dst) !== family) return { kind: 'invalid', reason: `PROXY v1 addresses are not ${proto}: ${src} ${dst}` };
  const port = v1Port(sport);
  if (port === undefined || v1Port(dport) === undefined) return { kind: 'invalid', reason: `PROXY v1 ports out of range: ${sport} ${dport}` };
  return { kind: 'header', version: 1, length, source: { address: src, port } };
}

function v1Port(text: string): number | undefined {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

function parseV2(buf: Buffer): ProxyHeader {
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return { kind: 'invalid', reason: `PROXY v2 version ${verCmd >> 4} (only 2 exists)` };
  const command = verCmd & 0x0f;
  if (command > 1) return { kind: 'invalid', reason: `PROXY v2 command ${command} (0 LOCAL or 1 PROXY)` };
  const length = 16 + buf.readUInt16BE(14);
  if (buf.length < length) return { kind: 'incomplete' };
  if (command === 0) return { kind: 'header', version: 2, length }; // LOCAL: the proxy's own connection
  const family = buf[13]! >> 4;
  const transport = buf[13]! & 0x0f;
  const body = buf.subarray(16, length);
  // AF_UNSPEC (or UNIX sockets, UDP): nothing to believe; the connection's own address is used.
  if (family === 0 || family === 3 || transport !== 1) return { kind: 'header', version: 2, length };
  if (family === 1) {
    if (body.length < 12) return { kind: 'invalid', reason: 'PROXY v2 TCP over IPv4 with fewer than 12 address bytes' };
    return { kind: 'header', version: 2, length, source: { address: [...body.subarray(0, 4)].join('.'), port: body.readUInt16BE(8) } };
  }
  if (family === 2) {
    if (body.length < 36) return { kind: 'invalid', reason: 'PROXY v2 TCP over IPv6 with fewer than 36 address bytes' };
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(i).toString(16));
    return { kind: 'header', version: 2, length, source: { address: groups.join(':'), port: body.readUInt16BE(32) } };
  }
  return { kind: 'invalid', reason: `PROXY v2 address family ${family} unknown` };
}
