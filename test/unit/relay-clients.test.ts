import { describe, expect, it } from '@jest/globals';
import { Clients, clientGroup } from '../../src/relay/inbound/clients.js';
import { cutFor, underStress } from '../../src/relay/inbound/session-limits.js';
import { MemoryBudget } from '../../src/relay/spool/memory-budget.js';

const limits = { perGroup: 3, ipv6Prefix: 64, evictIdleMs: 10_000 };

describe('client groups', () => {
  it('IPv4 by address, IPv4-mapped IPv6 as IPv4, IPv6 by its /64 (configurable)', () => {
    expect(clientGroup('192.0.2.7', 64)).toBe('192.0.2.7');
    expect(clientGroup('::ffff:192.0.2.7', 64)).toBe('192.0.2.7');
    expect(clientGroup('2001:db8:1:2:aaaa::1', 64)).toBe(clientGroup('2001:db8:1:2:ffff:1:2:3', 64));
    expect(clientGroup('2001:db8:1:2::1', 64)).not.toBe(clientGroup('2001:db8:1:3::1', 64));
    expect(clientGroup('2001:db8:1:2::1', 128)).not.toBe(clientGroup('2001:db8:1:2::2', 128));
    expect(clientGroup('2001:db8:1:2::1', 48)).toBe(clientGroup('2001:db8:1:3::1', 48));
  });
});

describe('Clients: admitted at open', () => {
  it('a burst over the limit refuses only its excess, whenever the greeting comes', () => {
    const c = new Clients(limits);
    const answers = ['a', 'b', 'c', 'd', 'e'].map((id) => c.opened(id, '192.0.2.1', 0).admitted);
    expect(answers).toEqual([true, true, true, false, false]);
    expect(c.from('192.0.2.1')).toBe(3);
    // the refused ones leave: the admitted ones are still counted, the next one is refused
    c.closed('d');
    c.closed('e');
    expect(c.opened('f', '192.0.2.1', 1).admitted).toBe(false);
    c.closed('a');
    expect(c.opened('g', '192.0.2.1', 2).admitted).toBe(true);
  });

  it('one IPv6 /64 is one group; another address is not affected', () => {
    const c = new Clients(limits);
    for (let i = 1; i <= 3; i++) expect(c.opened(`x${i}`, `2001:db8::${i}`, 0).admitted).toBe(true);
    expect(c.opened('x4', '2001:db8::ffff', 0).admitted).toBe(false);
    expect(c.opened('y', '2001:db8:0:1::1', 0).admitted).toBe(true);
    expect(c.opened('z', '192.0.2.9', 0).admitted).toBe(true);
  });

  it("a full group's idlest connection (idle evictIdleMs, not busy) gives way to a new one", async () => {
    const c = new Clients(limits);
    c.opened('a', '192.0.2.1', 0);
    c.opened('b', '192.0.2.1', 0);
    c.opened('c', '192.0.2.1', 0);
    c.active('a', 5_000);
    c.active('c', 2_000);
    expect(c.opened('d', '192.0.2.1', 9_000).admitted).toBe(false); // nobody idle 10 s yet
    c.conn('b')!.busy = 1; // the relay works for b (a MAIL held by backpressure)
    const r = c.opened('e', '192.0.2.1', 12_500);
    expect(r).toEqual({ admitted: true, evict: expect.objectContaining({ id: 'c' }) });
    expect(c.conn('c')!.admitted).toBe(false);
    expect(c.from('192.0.2.1')).toBe(3);
    c.closed('c'); // the evicted one goes: still 3
    expect(c.from('192.0.2.1')).toBe(3);
    await c.whileBusy('b', async () => expect(c.conn('b')!.busy).toBe(2));
  });
});

describe('session limits', () => {
  const o = { maxSessionMs: 60_000, stressIdleMs: 10_000, stressClientsRatio: 0.8, maxClients: 100 };
  const conn = (openedAt: number, lastActivity: number, busy = 0) => ({ id: 'a', group: 'g', admitted: true, openedAt, lastActivity, busy, left: false });

  it('stress from 80% of maxClients or a full receiving budget', () => {
    expect(underStress({ clients: 79, memoryFull: false }, o)).toBe(false);
    expect(underStress({ clients: 80, memoryFull: false }, o)).toBe(true);
    expect(underStress({ clients: 1, memoryFull: true }, o)).toBe(true);
  });

  it('total session time always; idle cut only under stress and never while the relay is busy', () => {
    expect(cutFor(conn(0, 59_000), 60_000, false, o)?.reason).toBe('session-time');
    expect(cutFor(conn(0, 0), 20_000, false, o)).toBeUndefined();
    expect(cutFor(conn(0, 0), 20_000, true, o)?.reply).toMatch(/^4\.4\.2 /);
    expect(cutFor(conn(0, 0, 1), 20_000, true, o)).toBeUndefined();
    expect(cutFor(conn(0, 15_000), 20_000, true, o)).toBeUndefined();
  });

  it('the receiving budget takes what fits and is given back', () => {
    const b = new MemoryBudget(100);
    expect(b.take(60)).toBe(true);
    expect(b.take(60)).toBe(false);
    expect(b.nearlyFull(50)).toBe(true);
    b.give(60);
    expect(b.take(100)).toBe(true);
  });
});
