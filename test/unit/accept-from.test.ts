// The allowAnySource guard by addresses covered (pure): 0.0.0.0/1 + 128.0.0.0/1
// is as open as 0.0.0.0/0.
import { describe, expect, it } from '@jest/globals';
import { decide } from '../../src/operator/reconcile/decide.js';
import { acceptFromStall, coveredAddresses } from '../../src/operator/reconcile/accept-from.js';
import { liveOf } from '../fixtures/live.js';
import { parsedMailContinuity } from '../fixtures/mailcontinuity.js';

const mc = (acceptFrom: string[], allowAnySource = false) =>
  parsedMailContinuity((s) => (s.relay = { ...s.relay, acceptFrom, allowAnySource }));

describe('acceptFrom coverage', () => {
  it('counts each address once, overlaps and host bits included', () => {
    expect(coveredAddresses(['10.0.0.0/8', '10.1.0.0/16', '10.2.3.4/24'])).toEqual({ 4: 1n << 24n, 6: 0n });
    expect(coveredAddresses(['192.0.2.0/25', '192.0.2.128/25', '2001:db8::/32', '2001:db8:1::/48'])).toEqual({
      4: 256n,
      6: 1n << 96n,
    });
  });

  it('refuses half of a family or more without allowAnySource, naming the fix', () => {
    const stall = acceptFromStall(mc(['0.0.0.0/1', '128.0.0.0/1']));
    expect(stall).toEqual({
      reason: 'AcceptFromTooWide',
      message: expect.stringContaining('spec.relay.acceptFrom covers 100% of all IPv4 addresses, as good as 0.0.0.0/0'),
    });
    expect(stall!.message).toContain('allowAnySource: true');
    expect(acceptFromStall(mc(['0.0.0.0/2', '64.0.0.0/2']))?.message).toContain('50%');
    expect(acceptFromStall(mc(['::/1', '8000::/1']))?.message).toContain('IPv6');
    expect(acceptFromStall(mc(['0.0.0.0/1', '128.0.0.0/1'], true))).toBeUndefined();
    // Wide private ranges are not the world.
    expect(acceptFromStall(mc(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7']))).toBeUndefined();
  });

  it('decide: nothing applied while acceptFrom is that wide', () => {
    const plan = decide(liveOf(mc(['0.0.0.0/1', '128.0.0.0/1'])), { defaultImage: 'example/mc:1', now: new Date() });
    expect(plan.apply).toEqual([]);
    expect(plan.stall?.reason).toBe('AcceptFromTooWide');
  });
});
