import { describe, expect, it } from '@jest/globals';
import { WorkQueue } from '../../src/operator/workqueue.js';

describe('WorkQueue', () => {
  it('keeps one entry per key', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
  });

  it('never hands a key to two workers at once, and requeues it when done', async () => {
    const q = new WorkQueue();
    q.add('a');
    const first = await q.get();
    q.add('a'); // changed while being processed
    expect(q.length).toBe(0);
    let second: string | undefined;
    const waiting = q.get().then((k) => (second = k));
    await new Promise((r) => setImmediate(r));
    expect(second).toBeUndefined(); // not handed out while 'a' is processing
    q.done(first!);
    await waiting;
    expect(second).toBe('a');
  });

  it('backs off exponentially per key (retry n waits base × 2^n, ±20 %) and forgets on success', async () => {
    const q = new WorkQueue({ baseDelayMs: 25, maxDelayMs: 10_000 });
    const waited: number[] = [];
    for (let n = 0; n < 4; n++) {
      const t0 = Date.now();
      q.addRateLimited('a');
      expect(await q.get()).toBe('a');
      waited.push(Date.now() - t0);
      q.done('a');
    }
    expect(q.retries('a')).toBe(4);
    // Each wait is at least the lower end of its window: 20, 40, 80, 160 ms (a timer never fires early).
    waited.forEach((ms, n) => expect(ms).toBeGreaterThanOrEqual(Math.floor(25 * 2 ** n * 0.8) - 1));
    q.forget('a');
    expect(q.retries('a')).toBe(0);
  });

  it('limits the overall rate of retries with a token bucket', async () => {
    const q = new WorkQueue({ baseDelayMs: 1, qps: 50, burst: 2 });
    const t0 = Date.now();
    for (const k of ['a', 'b', 'c', 'd', 'e']) q.addRateLimited(k);
    for (let i = 0; i < 5; i++) q.done((await q.get())!);
    // 2 from the burst, then 3 more at 50/s: at least ~60 ms.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(50);
  });

  it('addAfter keeps the earliest pending time and shutdown releases waiters', async () => {
    const q = new WorkQueue();
    q.addAfter('a', 10_000);
    q.addAfter('a', 5);
    expect(await q.get()).toBe('a');
    const waiting = q.get();
    q.shutdown();
    expect(await waiting).toBeUndefined();
  });
});
