// The PROXY protocol header (versions 1 and 2) as the relay reads it
// (src/relay/inbound/proxy-protocol.ts, pure), and spec.relay.proxyProtocol in
// the schema. The relay behind a real HAProxy: test/e2e/relay-proxy-protocol.test.ts.
import { describe, expect, it } from '@jest/globals';
import { MailContinuitySpec } from '../../src/api/v1alpha1/mailcontinuity.js';
import { parseProxyHeader, V2_SIGNATURE } from '../../src/relay/inbound/proxy-protocol.js';
import { validSpec } from '../fixtures/mailcontinuity.js';

/** A version 2 header: command (0 LOCAL, 1 PROXY), family byte, address block, TLVs. */
function v2(command: number, famProto: number, addresses: Buffer, tlvs = Buffer.alloc(0)): Buffer {
  const fixed = Buffer.alloc(4);
  fixed[0] = 0x20 | command;
  fixed[1] = famProto;
  fixed.writeUInt16BE(addresses.length + tlvs.length, 2);
  return Buffer.concat([V2_SIGNATURE, fixed, addresses, tlvs]);
}

function ipv4Block(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from(dst).copy(b, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return b;
}

describe('PROXY protocol version 1', () => {
  it('reads the client of a TCP4 and a TCP6 line, and its length (what follows is SMTP)', () => {
    const line = 'PROXY TCP4 192.0.2.7 198.51.100.1 51234 25\r\n';
    expect(parseProxyHeader(Buffer.from(`${line}EHLO x\r\n`))).toEqual({
      kind: 'header',
      version: 1,
      length: line.length,
      source: { address: '192.0.2.7', port: 51234 },
    });
    expect(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 4000 25\r\n'))).toMatchObject({
      source: { address: '2001:db8::7', port: 4000 },
    });
  });

  it('UNKNOWN carries no client (the proxy speaks for itself)', () => {
    const h = parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'));
    expect(h).toEqual({ kind: 'header', version: 1, length: 15 });
  });

  it('waits for the rest of a line split by TCP, byte by byte', () => {
    const line = Buffer.from('PROXY TCP4 192.0.2.7 198.51.100.1 51234 25\r\n');
    for (let i = 1; i < line.length; i++) expect(parseProxyHeader(line.subarray(0, i)).kind).toBe('incomplete');
    expect(parseProxyHeader(line).kind).toBe('header');
  });

  it.each([
    ['SMTP instead of a header', 'EHLO client.example\r\n', /no PROXY protocol header/],
    ['a line over 107 bytes', `PROXY TCP4 ${'1'.repeat(120)}`, /longer than 107/],
    ['a family that is not TCP4/TCP6', 'PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n', /not "PROXY TCP4\|TCP6/],
    ['an IPv6 address as TCP4', 'PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n', /not TCP4/],
    ['a host name as the source', 'PROXY TCP4 evil.example 198.51.100.1 1 2\r\n', /not TCP4/],
    ['a port over 65535', 'PROXY TCP4 192.0.2.7 198.51.100.1 70000 25\r\n', /ports out of range/],
    ['a port with a leading zero', 'PROXY TCP4 192.0.2.7 198.51.100.1 025 25\r\n', /ports out of range/],
    ['a missing field', 'PROXY TCP4 192.0.2.7 198.51.100.1 25\r\n', /not "PROXY TCP4/],
    ['a header injection attempt', 'PROXY TCP4 192.0.2.7\r\nX: y 198.51.100.1 1 2\r\n', /not "PROXY TCP4/],
  ])('refuses %s', (_what, text, reason) => {
    const h = parseProxyHeader(Buffer.from(text));
    expect(h.kind).toBe('invalid');
    expect(h.kind === 'invalid' && h.reason).toMatch(reason);
  });
});

describe('PROXY protocol version 2', () => {
  it('reads the client of TCP over IPv4, skipping TLVs, and its length', () => {
    const tlvs = Buffer.from([0x05, 0x00, 0x03, 0x61, 0x62, 0x63]); // PP2_TYPE_UNIQUE_ID "abc"
    const header = v2(1, 0x11, ipv4Block([192, 0, 2, 9], [198, 51, 100, 1], 40000, 25), tlvs);
    expect(parseProxyHeader(Buffer.concat([header, Buffer.from('EHLO x\r\n')]))).toEqual({
      kind: 'header',
      version: 2,
      length: header.length,
      source: { address: '192.0.2.9', port: 40000 },
    });
  });

  it('reads the client of TCP over IPv6', () => {
    const block = Buffer.alloc(36);
    Buffer.from('20010db8000000000000000000000007', 'hex').copy(block, 0);
    Buffer.from('20010db8000000000000000000000001', 'hex').copy(block, 16);
    block.writeUInt16BE(5555, 32);
    block.writeUInt16BE(25, 34);
    expect(parseProxyHeader(v2(1, 0x21, block))).toMatchObject({ source: { address: '2001:db8:0:0:0:0:0:7', port: 5555 } });
  });

  it('LOCAL (a health check of the proxy) and AF_UNSPEC carry no client', () => {
    expect(parseProxyHeader(v2(0, 0x00, Buffer.alloc(0)))).toEqual({ kind: 'header', version: 2, length: 16 });
    expect(parseProxyHeader(v2(1, 0x00, Buffer.alloc(0)))).toEqual({ kind: 'header', version: 2, length: 16 });
  });

  it('waits for the whole header, byte by byte', () => {
    const header = v2(1, 0x11, ipv4Block([192, 0, 2, 9], [198, 51, 100, 1], 40000, 25));
    for (let i = 1; i < header.length; i++) expect(parseProxyHeader(header.subarray(0, i)).kind).toBe('incomplete');
  });

  it.each([
    ['version 3', (() => { const h = v2(1, 0x11, ipv4Block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)); h[12] = 0x31; return h; })(), /version 3/],
    ['command 2', (() => { const h = v2(1, 0x11, ipv4Block([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)); h[12] = 0x22; return h; })(), /command 2/],
    ['an IPv4 block too short', v2(1, 0x11, Buffer.alloc(8)), /fewer than 12/],
    ['an IPv6 block too short', v2(1, 0x21, Buffer.alloc(20)), /fewer than 36/],
    ['an unknown family', v2(1, 0x41, Buffer.alloc(12)), /family 4/],
  ])('refuses %s', (_what, header, reason) => {
    const h = parseProxyHeader(header);
    expect(h.kind).toBe('invalid');
    expect(h.kind === 'invalid' && h.reason).toMatch(reason);
  });
});

describe('spec.relay.proxyProtocol', () => {
  it('is off when omitted and takes a list of trusted proxies', () => {
    expect(MailContinuitySpec.parse(validSpec()).relay.proxyProtocol).toBeUndefined();
    const spec = validSpec();
    Object.assign(spec.relay, { proxyProtocol: { trustedProxies: ['10.0.0.0/8', 'fd00::/8'] } });
    expect(MailContinuitySpec.parse(spec).relay.proxyProtocol).toEqual({ trustedProxies: ['10.0.0.0/8', 'fd00::/8'] });
  });

  it('refuses a list that trusts every address, naming the field and why', () => {
    const spec = validSpec();
    Object.assign(spec.relay, { proxyProtocol: { trustedProxies: ['0.0.0.0/0'] } });
    const r = MailContinuitySpec.safeParse(spec);
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]).toMatchObject({ path: ['relay', 'proxyProtocol', 'trustedProxies'] });
    expect(r.error!.issues[0]!.message).toMatch(/any client could then name the address acceptFrom checks/);
  });
});
