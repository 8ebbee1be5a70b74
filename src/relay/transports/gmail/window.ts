// How many deliveries the Gmail transport wants in flight. Google answers an
// import in hundreds of milliseconds (and a mailbox's first one also waits for
// its access token), so a fixed window of a few deliveries caps the backup at
// window / latency: 10 at 300 ms with a token call is 15 imports/s, while
// Google's quotas allow 800 imports/s per project (1,200,000 units a minute,
// 25 an import) and 10/s per mailbox (pacing.ts keeps each mailbox below that).
// By Little's law the window is the rate to sustain times the time one
// delivery takes: the time is measured (a moving mean of the answered calls),
// the rate is this relay's share of the project's quota, and the window stays
// between the configured least (tuning.backupConcurrency) and MAX_WINDOW.

/** Google's per-project import quota: 1,200,000 units a minute at 25 units an import. */
export const PROJECT_IMPORTS_PER_SECOND = 800;
/** The share of the project quota the relays aim at together (the rest is margin for retries and searches). */
const QUOTA_SHARE = 0.9;
/**
 * The most deliveries in flight, whatever the latency: each holds a socket and
 * its message's state (about 20 KB with the client's request objects), so 500
 * stay within a few tens of MB of the pod's memory; 500 at 800 ms is 600 imports/s.
 */
export const MAX_WINDOW = 500;
/** Weight of each new observation in the moving mean (about the last 20 calls). */
const ALPHA = 0.05;

/**
 * The imports per second one relay aims at: its share of the project quota. `replicas` is how
 * many relays share it; the operator sends that share (as each mailbox's, see pacing.ts), so
 * a relay learns it at the operator's first sync and aims at the whole project's until then.
 */
export function targetImportsPerSecond(replicas: number): number {
  return (PROJECT_IMPORTS_PER_SECOND * QUOTA_SHARE) / Math.max(1, replicas);
}

export class ImportWindow {
  private meanMs: number | undefined;

  constructor(
    private o: {
      /** Imports per second to sustain. */
      targetPerSecond: number;
      /** The least window (tuning.backupConcurrency). */
      min: number;
      max?: number;
    },
  ) {}

  /** This relay's share changed (the operator's sync): imports per second to sustain from now on. */
  setTarget(perSecond: number): void {
    this.o.targetPerSecond = perSecond;
  }

  /** A call to Google was answered after `ms` (token and import). */
  observe(ms: number): void {
    this.meanMs = this.meanMs === undefined ? ms : this.meanMs + ALPHA * (ms - this.meanMs);
  }

  /** Deliveries to have in flight now. */
  get size(): number {
    const max = Math.max(this.o.min, this.o.max ?? MAX_WINDOW);
    if (this.meanMs === undefined) return this.o.min;
    return Math.min(max, Math.max(this.o.min, Math.ceil((this.o.targetPerSecond * this.meanMs) / 1000)));
  }
}
