// Each relay's share of a Gmail mailbox's quota (pure parts): the operator's
// split (mailboxQuotaShare) and the relay's pacing at that share, on a fake
// clock: the replicas together never pass Gmail's 15,000 units in any minute.
import { describe, expect, it } from '@jest/globals';
import { GMAIL_MAILBOX_UNITS_PER_MINUTE, GMAIL_USER_QUOTA_PER_MINUTE, mailboxQuotaShare } from '../../src/api/relay/admin.js';
import { TokenBucket } from '../../src/lib/token-bucket.js';
import { MailboxPacing } from '../../src/relay/transports/gmail/pacing.js';

describe('mailboxQuotaShare', () => {
  it('splits 13,500 units a minute across the replicas, at least one import (25 units) each', () => {
    expect(mailboxQuotaShare(1)).toBe(13_500);
    expect(mailboxQuotaShare(2)).toBe(6_750);
    expect(mailboxQuotaShare(3)).toBe(4_500);
    expect(mailboxQuotaShare(50)).toBe(270);
    expect(mailboxQuotaShare(0)).toBe(13_500);
    expect(mailboxQuotaShare(1000)).toBe(25);
  });
});

describe('TokenBucket.setRate', () => {
  it('keeps what was earned at the old rate, up to the new capacity, and refills at the new rate', () => {
    let t = 0;
    const b = new TokenBucket(1000, 60_000, () => t); // 1 unit per ms
    expect(b.take(1000)).toBe(0);
    t = 300; // 300 earned
    b.setRate(100, 6_000); // now 0.1 per ms, at most 100
    expect(b.take(101)).toBeGreaterThan(0);
    expect(b.take(100)).toBe(0);
    t = 400; // 10 more at the new rate
    expect(b.take(11)).toBe(10);
    expect(b.take(10)).toBe(0);
  });
});

describe('MailboxPacing at a share', () => {
  /** Imports admitted for one mailbox by `pacers` taking turns every 10 ms for `ms`; the largest sum of units in any 60 s window. */
  function busiestMinute(pacers: MailboxPacing[], clock: { t: number }, ms: number): number {
    const admitted: number[] = [];
    for (; clock.t < ms; clock.t += 10) for (const p of pacers) if (!p.admitImport('alice@corp.example.org')) admitted.push(clock.t);
    let max = 0;
    for (let i = 0, j = 0; i < admitted.length; i++) {
      while (admitted[j]! <= admitted[i]! - 60_000) j++;
      max = Math.max(max, (i - j + 1) * 25);
    }
    return max;
  }

  it('two relays at the whole budget each would pass Gmail\'s 15,000 units a minute (what the split prevents)', () => {
    const clock = { t: 0 };
    const pacers = [0, 1].map(() => new MailboxPacing({ now: () => clock.t }));
    expect(busiestMinute(pacers, clock, 180_000)).toBeGreaterThan(GMAIL_USER_QUOTA_PER_MINUTE);
  });

  it.each([2, 3, 7])('%i relays at their share stay within 13,500 a minute plus one burst of 1,000', (n) => {
    const clock = { t: 0 };
    const pacers = Array.from({ length: n }, () => new MailboxPacing({ now: () => clock.t }));
    // The share arrives after the relays started (with the whole budget) but before any import.
    for (const p of pacers) p.setUnitsPerMinute(mailboxQuotaShare(n));
    expect(pacers[0]!.unitsPerMinute).toBe(Math.floor(GMAIL_MAILBOX_UNITS_PER_MINUTE / n));
    const busiest = busiestMinute(pacers, clock, 180_000);
    expect(busiest).toBeLessThanOrEqual(14_500);
    expect(busiest).toBeGreaterThan(13_000); // and the budget is used
  });

  it('a share that shrinks while a mailbox is being paced applies to its bucket at once', () => {
    const clock = { t: 0 };
    const p = new MailboxPacing({ now: () => clock.t });
    expect(p.admitImport('bob@corp.example.org')).toBeUndefined(); // the bucket exists, full (1,000)
    p.setUnitsPerMinute(mailboxQuotaShare(10)); // 1,350 a minute, burst 100
    let admitted = 0;
    while (!p.admitImport('bob@corp.example.org')) admitted++;
    expect(admitted).toBe(4); // 100 units of burst left, not 975
    p.setUnitsPerMinute(1_000_000);
    expect(p.unitsPerMinute).toBe(13_500); // never above the configured budget
  });
});
