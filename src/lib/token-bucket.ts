// A token bucket: refills continuously at `unitsPerMinute`, holds at most
// `capacity`. The scheduler paces the replay to the primary with one
// (messages), the Gmail transport each mailbox (Gmail's quota units).

export class TokenBucket {
  private level: number;
  private last: number;
  constructor(
    private capacity: number,
    private unitsPerMinute: number,
    private readonly now: () => number,
  ) {
    this.level = capacity;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    this.level = Math.min(this.capacity, this.level + ((t - this.last) * this.unitsPerMinute) / 60_000);
    this.last = t;
  }

  /** Takes `units` and returns 0, or takes nothing and returns the milliseconds until they are there. */
  take(units: number): number {
    this.refill();
    if (this.level >= units) {
      this.level -= units;
      return 0;
    }
    return Math.ceil(((units - this.level) * 60_000) / this.unitsPerMinute);
  }

  /**
   * A new rate and capacity from now on (what was earned at the old rate is kept, up to the new
   * capacity): the operator changed this relay's share of a quota.
   */
  setRate(capacity: number, unitsPerMinute: number): void {
    this.refill();
    this.capacity = capacity;
    this.unitsPerMinute = unitsPerMinute;
    this.level = Math.min(this.level, capacity);
  }

  /** Charges `units` even when that leaves the bucket in debt (calls that must not wait). */
  charge(units: number): void {
    this.refill();
    this.level -= units;
  }
}
