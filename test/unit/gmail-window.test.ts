import { describe, expect, it } from '@jest/globals';
import {
  ImportWindow,
  MAX_WINDOW,
  PROJECT_IMPORTS_PER_SECOND,
  targetImportsPerSecond,
} from '../../src/relay/transports/gmail/window.js';

describe('the Gmail import window (window.ts)', () => {
  it("aims at 90 % of the project's 800 imports/s, shared by the replicas", () => {
    expect(PROJECT_IMPORTS_PER_SECOND).toBe(800);
    expect(targetImportsPerSecond(1)).toBe(720);
    expect(targetImportsPerSecond(2)).toBe(360);
    expect(targetImportsPerSecond(0)).toBe(720);
  });

  it('starts at the configured least, then follows the measured latency (Little: rate x time)', () => {
    const w = new ImportWindow({ targetPerSecond: 360, min: 20 });
    expect(w.size).toBe(20);
    w.observe(300);
    expect(w.size).toBe(108); // 360/s x 0.3 s
    for (let i = 0; i < 200; i++) w.observe(800);
    expect(w.size).toBe(288); // the moving mean has reached 800 ms
  });

  it('never below the least nor above MAX_WINDOW', () => {
    const fast = new ImportWindow({ targetPerSecond: 360, min: 20 });
    fast.observe(5);
    expect(fast.size).toBe(20);
    const slow = new ImportWindow({ targetPerSecond: 720, min: 20 });
    slow.observe(60_000); // a timeout-long call
    expect(slow.size).toBe(MAX_WINDOW);
    expect(new ImportWindow({ targetPerSecond: 720, min: 600 }).size).toBe(600); // a least above the cap wins
  });

  it('follows the share the operator sends (the relay config carries no replica count)', () => {
    const w = new ImportWindow({ targetPerSecond: targetImportsPerSecond(1), min: 20 });
    w.observe(500);
    expect(w.size).toBe(360); // the whole project's share until the operator's first sync
    w.setTarget(targetImportsPerSecond(13_500 / 4_500)); // three relays: 4,500 units per mailbox each
    expect(w.size).toBe(120);
  });
});
