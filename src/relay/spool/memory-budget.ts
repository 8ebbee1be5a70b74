// The relay's budget for message bytes held in memory while they are received
// (each writer buffers a small message to write it in one go at commit). Past
// the budget a writer streams to its queue file at once instead: 500 sessions
// stalled in the middle of DATA hold a chunk each, not 256 KiB each.
export class MemoryBudget {
  used = 0;
  constructor(readonly limit: number) {}

  /** Takes `n` bytes when they fit; false (nothing taken) when they do not. */
  take(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used = Math.max(0, this.used - n);
  }

  /** True when the budget has less than `margin` bytes left. */
  nearlyFull(margin: number): boolean {
    return this.used + margin > this.limit;
  }
}
