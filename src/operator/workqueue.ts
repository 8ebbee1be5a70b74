// A work queue with client-go's guarantees:
//   - one entry per key: adding a queued key again is a no-op (dedup);
//   - a key is never handed to two workers at once: a key added while it is
//     being processed is queued again only when its worker calls done();
//   - per-key exponential backoff with jitter for failures (addRateLimited),
//     reset by forget(); and an overall token bucket so a storm of failures
//     cannot hammer the apiserver;
//   - addAfter(key, ms) for periodic work (requeue-after).

export interface WorkQueueOptions {
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Overall rate limit for rate-limited adds: tokens per second and burst. */
  qps?: number;
  burst?: number;
  onAdd?: () => void;
  onRetry?: () => void;
  onDepth?: (depth: number) => void;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly waiters: ((key: string | undefined) => void)[] = [];
  private shuttingDown = false;
  private tokens: number;
  private lastRefill = Date.now();
  private readonly opts: Required<Omit<WorkQueueOptions, 'onAdd' | 'onRetry' | 'onDepth'>> & WorkQueueOptions;

  constructor(opts: WorkQueueOptions = {}) {
    this.opts = { baseDelayMs: 5, maxDelayMs: 5 * 60_000, qps: 10, burst: 100, ...opts };
    this.tokens = this.opts.burst;
  }

  get length(): number {
    return this.queue.length;
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.opts.onAdd?.();
    this.dirty.add(key);
    if (this.processing.has(key)) return; // queued again by done()
    const waiter = this.waiters.shift();
    if (waiter) {
      this.dirty.delete(key);
      this.processing.add(key);
      waiter(key);
    } else {
      this.queue.push(key);
      this.opts.onDepth?.(this.queue.length);
    }
  }

  /** Adds the key after `ms`; an earlier pending add of the same key wins. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) return this.add(key);
    const at = Date.now() + ms;
    const pending = this.timers.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref?.();
    this.timers.set(key, { at, timer });
  }

  /** Adds the key after its backoff: base * 2^failures with jitter, and no faster than the overall bucket allows. */
  addRateLimited(key: string): void {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    this.opts.onRetry?.();
    const backoff = Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** n) * (0.8 + Math.random() * 0.4);
    this.addAfter(key, Math.max(backoff, this.bucketDelay()));
  }

  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  private bucketDelay(): number {
    const now = Date.now();
    this.tokens = Math.min(this.opts.burst, this.tokens + ((now - this.lastRefill) / 1000) * this.opts.qps);
    this.lastRefill = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.opts.qps) * 1000;
  }

  /** The next key to process, or undefined once the queue shuts down. Call done(key) afterwards. */
  get(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const key = this.queue.shift();
    if (key !== undefined) {
      this.dirty.delete(key);
      this.processing.add(key);
      this.opts.onDepth?.(this.queue.length);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) {
      this.dirty.delete(key);
      this.add(key);
    }
  }

  shutdown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const w of this.waiters.splice(0)) w(undefined);
  }
}
