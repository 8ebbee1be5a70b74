// The replay to the primary after a failover (Postfix's `postqueue -f`, paced):
// a token bucket at the replay rate that admits primary deliveries, and what the
// scheduler counts of the failover that last started (copies to the backup,
// messages replayed), published in its facts for the admin snapshot.
import { TokenBucket } from '../../lib/token-bucket.js';

export class Replay {
  private bucket: TokenBucket | null = null;
  private timer: NodeJS.Timeout | undefined;
  /** Messages delivered to the backup since failover last became active. */
  toBackup = 0;
  /** Messages delivered to the primary, paced, since failover last became active. */
  replayed = 0;

  constructor(
    private readonly now: () => number,
    /** Called when a delivery held back by the pacing may start. */
    private readonly wake: () => void,
  ) {}

  /** A new failover counts its own copies and its own replay (the primary may take mail again, paced, before it ends). */
  newFailover(): void {
    this.toBackup = 0;
    this.replayed = 0;
  }

  /** A message was delivered to `dest`: counted as a copy during a failover, or as replayed while pacing. */
  countDelivered(dest: 'primary' | 'backup', failoverActive: boolean): void {
    if (dest === 'backup') {
      if (failoverActive) this.toBackup++;
    } else if (this.active) this.replayed++;
  }

  get active(): boolean {
    return this.bucket !== null;
  }

  /** Paces primary deliveries at `perSecond` (null: no pacing). */
  setRate(perSecond: number | null): void {
    this.bucket = perSecond === null ? null : new TokenBucket(Math.max(1, perSecond), perSecond * 60, this.now);
  }

  /** True when one more primary delivery may start now; otherwise wakes the scheduler when one may. */
  admit(): boolean {
    if (!this.bucket) return true;
    const wait = this.bucket.take(1);
    if (wait <= 0) return true;
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.wake();
      }, wait);
      this.timer.unref();
    }
    return false;
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}
