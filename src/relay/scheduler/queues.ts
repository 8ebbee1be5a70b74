// The scheduler's queues: per destination a ready queue of two FIFOs (like
// qmgr's incoming and deferred queues) and one timer heap for retries.
import type { Destination } from '../types.js';
import type { Entry } from './entry.js';

export interface Timer {
  at: number;
  id: string;
  dest: Destination;
}

/** A binary min-heap of timers. */
class TimerHeap {
  private items: Array<Timer> = [];
  get size(): number {
    return this.items.length;
  }
  peek(): Timer | undefined {
    return this.items[0];
  }
  push(item: Timer): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]!.at <= a[i]!.at) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }
  pop(): Timer | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]!.at < a[m]!.at) m = l;
        if (r < a.length && a[r]!.at < a[m]!.at) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
  /** Removes every item for which `f` is true. */
  removeWhere(
    f: (item: Timer) => boolean,
  ): Array<Timer> {
    const removed = this.items.filter(f);
    if (removed.length === 0) return removed;
    const kept = this.items.filter((i) => !f(i));
    this.items = [];
    for (const k of kept) this.push(k);
    return removed;
  }
}

/** A FIFO with O(1) shift. */
class Fifo {
  private items: string[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(id: string): void {
    this.items.push(id);
  }
  shift(): string | undefined {
    if (this.head >= this.items.length) return undefined;
    const v = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return v;
  }
}

/** Ready to try at one destination: never-attempted messages (incoming) and retries (deferred). */
export class ReadyQueue {
  private readonly fresh = new Fifo();
  private readonly retry = new Fifo();
  private turn = 0;

  push(id: string, attempts: number): void {
    (attempts === 0 ? this.fresh : this.retry).push(id);
  }

  pushRetry(id: string): void {
    this.retry.push(id);
  }

  /** New mail first, but every fourth turn goes to a retry so deferred mail is not starved. */
  take(): string | undefined {
    const f = this.fresh;
    const r = this.retry;
    if (f.length > 0 && (r.length === 0 || this.turn++ % 4 !== 3)) return f.shift();
    return r.shift() ?? f.shift();
  }

  get length(): number {
    return this.fresh.length + this.retry.length;
  }

  /** Never attempted: what counts as intake backlog. */
  get freshLength(): number {
    return this.fresh.length;
  }
}

/** Retry times of messages: one timer for the earliest, `due` called for each as its time comes. */
export class RetryTimers {
  private readonly heap = new TimerHeap();
  private timer: NodeJS.Timeout | undefined;
  private at = Infinity;
  private stopped = false;

  constructor(
    private readonly now: () => number,
    private readonly due: (dest: Destination, id: string) => void,
    private readonly afterDue: () => void,
  ) {}

  push(t: Timer): void {
    this.heap.push(t);
    this.arm();
  }

  /** Takes every timer for which `f` is true out of the heap. */
  removeWhere(f: (t: Timer) => boolean): Timer[] {
    return this.heap.removeWhere(f);
  }

  private arm(): void {
    const next = this.heap.peek();
    if (!next || this.stopped) return;
    if (this.timer && next.at >= this.at) return;
    clearTimeout(this.timer);
    this.at = next.at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.at = Infinity;
        const now = this.now();
        for (let t = this.heap.peek(); t && t.at <= now; t = this.heap.peek()) {
          this.heap.pop();
          this.due(t.dest, t.id);
        }
        this.afterDue();
        this.arm();
      },
      Math.max(0, next.at - this.now()),
    );
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}

/** Both destinations' ready queues and the retry timers: where each message waits for its next attempt. */
export class DeliveryQueues {
  readonly ready: Record<Destination, ReadyQueue> = { primary: new ReadyQueue(), backup: new ReadyQueue() };
  private readonly timers: RetryTimers;

  constructor(
    now: () => number,
    private readonly get: (id: string) => Entry | undefined,
    /** Called after retries became due. */
    wake: () => void,
  ) {
    this.timers = new RetryTimers(now, (dest, id) => {
      if (this.get(id)) this.ready[dest].pushRetry(id);
    }, wake);
  }

  /**
   * Puts `entry` in line at each destination where it has recipients pending
   * and is neither in line nor in flight: the ready queue when its attempt is
   * due, the timers otherwise. True when it is in flight somewhere or due now
   * at a destination that is up (false: it only waits).
   */
  enqueue(entry: Entry, now: number, isDown: (dest: Destination) => boolean): boolean {
    let soon = entry.busy.size > 0;
    for (const dest of entry.pendingAt) {
      const ds = entry.state.deliveries[dest]!;
      if (ds.nextAttemptAt <= now && !isDown(dest)) soon = true;
      if (entry.busy.has(dest) || entry.queued.has(dest)) continue;
      entry.queued.add(dest);
      if (ds.nextAttemptAt <= now) this.ready[dest].push(entry.id, ds.attempts);
      else this.timers.push({ at: ds.nextAttemptAt, id: entry.id, dest });
    }
    return soon;
  }

  /** Every retry waiting for its time at `dest` is due now (Postfix's `postqueue -f`); returns how many waited. */
  retryNow(dest: Destination): number {
    const moved = this.timers.removeWhere((t) => t.dest === dest);
    // Straight into the retry queue, still frozen: they are thawed one at a time as they are taken.
    for (const t of moved) {
      const e = this.get(t.id);
      if (!e) continue;
      if (e.closing || e.busy.has(dest) || !e.pendingAt.has(dest)) e.queued.delete(dest);
      else this.ready[dest].pushRetry(e.id);
    }
    return moved.length;
  }

  /** Every retry of message `id` waiting for its time is due now (Postfix `postqueue -i`); returns how many waited. */
  retryMessage(id: string): number {
    const moved = this.timers.removeWhere((t) => t.id === id);
    for (const t of moved) this.ready[t.dest].pushRetry(id);
    return moved.length;
  }

  stop(): void {
    this.timers.stop();
  }
}
