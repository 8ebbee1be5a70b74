// The allowAnySource guard, by addresses covered. The schema refuses 0.0.0.0/0
// and ::/0 without allowAnySource, but not 0.0.0.0/1 + 128.0.0.0/1, which let
// in the same world. The operator counts the addresses the acceptFrom list
// covers (overlaps counted once) and, without allowAnySource, refuses a list
// that covers half of an address family or more: the relay would be open to
// any sender. Pure.
import type { MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import { compileCidrs } from '../../lib/ip.js';
import type { Stall } from '../status.js';

export const ACCEPT_FROM_TOO_WIDE = 'AcceptFromTooWide';

const BITS = { 4: 32, 6: 128 } as const;

const valueOf = (bytes: Uint8Array) => bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);

/** How many IPv4 and IPv6 addresses the CIDRs cover together. */
export function coveredAddresses(cidrs: readonly string[]): { 4: bigint; 6: bigint } {
  const covered = { 4: 0n, 6: 0n };
  for (const family of [4, 6] as const) {
    const ranges = compileCidrs(cidrs)
      .filter((c) => c.family === family)
      .map((c) => {
        const size = 1n << BigInt(BITS[family] - c.prefixLength);
        const start = valueOf(c.bytes) & ~(size - 1n);
        return [start, start + size] as const;
      })
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    let end = -1n;
    for (const [s, e] of ranges) {
      if (e <= end) continue;
      covered[family] += e - (s > end ? s : end);
      end = e;
    }
  }
  return covered;
}

/** The Stall when acceptFrom covers half of IPv4 or IPv6 or more and allowAnySource is not set. */
export function acceptFromStall(mc: MailContinuity): Stall | undefined {
  const { acceptFrom, allowAnySource } = mc.spec.relay;
  if (allowAnySource) return undefined;
  const covered = coveredAddresses(acceptFrom);
  const family = ([4, 6] as const).find((f) => covered[f] * 2n >= 1n << BigInt(BITS[f]));
  if (family === undefined) return undefined;
  const all = 1n << BigInt(BITS[family]);
  const share = Number((covered[family] * 1000n) / all) / 10;
  return {
    reason: ACCEPT_FROM_TOO_WIDE,
    message:
      `spec.relay.acceptFrom covers ${share}% of all IPv${family} addresses, as good as ${family === 4 ? '0.0.0.0/0' : '::/0'}: ` +
      `list your senders' networks, or set spec.relay.allowAnySource: true to accept any client (mail is still limited to spec.domains)`,
  };
}
