// A pool of SMTP connections to one host (Postfix's connection cache):
// at most maxConnections connections, idle ones reused last in first out (the
// warmest), closed after IDLE_MS (smtp_connection_cache_time_limit) or
// MAX_MESSAGES transactions (smtp_connection_reuse_count_limit-like); callers
// beyond the limit wait in FIFO order. A connection that failed in any way is
// destroyed, never reused. A cached connection the server closed while it was
// idle is retried once on a new connection. The relay only ever sends a
// finished message from the spool, so there is nothing to compose, and the
// cost that matters is round trips and writes.
import type { RecipientOutcome } from '../../types.js';
import { Connection } from './connection.js';
import type { MessageSource } from './data-writer.js';
import { SmtpSessionError, type SmtpClientOptions } from './options.js';

export type { SmtpClientOptions } from './options.js';

/** close(): busy connections get this long to finish before they are destroyed. */
const CLOSE_GRACE_MS = 2000;

/** A pool of SMTP connections to one host. */
export class SmtpPool {
  /** Idle connections, the most recently used last. */
  private readonly idle: Connection[] = [];
  private readonly all = new Set<Connection>();
  /** Callers holding a connection slot (with or without a connection yet). */
  private leases = 0;
  private readonly waiters: Array<{ resolve: (c: Connection | undefined) => void; reject: (e: Error) => void }> = [];
  private closing = false;
  private readonly aborts = new WeakMap<AbortSignal, Set<() => void>>();

  constructor(private readonly o: SmtpClientOptions) {}

  /**
   * Sends one message to `to` (distinct envelope recipients). Never throws:
   * every failure is an outcome.
   */
  async send(from: string, to: string[], msg: MessageSource, signal?: AbortSignal): Promise<RecipientOutcome[]> {
    const deferAll = (detail: string): RecipientOutcome[] => to.map((recipient) => ({ recipient, status: 'deferred', detail: detail.slice(0, 500) }));
    if (this.closing) return deferAll('SMTP transport closed');
    if (signal?.aborted) return deferAll('aborted');
    let conn: Connection | undefined;
    try {
      conn = await this.lease(signal);
    } catch (e) {
      return deferAll((e as Error).message);
    }
    const started = Date.now();
    let current: Connection | undefined;
    const stopWatching = signal ? this.watch(signal, () => current?.destroy(new Error('aborted'))) : undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        const reused = conn !== undefined;
        current = conn ?? this.connection();
        conn = undefined;
        try {
          if (!reused) await current.open();
          const outcomes = await current.transaction(from, to, msg);
          conn = current;
          this.o.log.debug({ to: to.length, outcomes: outcomes.map((o) => o.status), ms: Date.now() - started, reused }, 'SMTP transaction');
          return outcomes;
        } catch (e) {
          const err = e as Error;
          current.destroy();
          if (signal?.aborted) return deferAll('aborted');
          const timeout = err instanceof SmtpSessionError && err.opts.timeout;
          // A cached connection the server had closed: nothing was said, try a new one.
          if (reused && attempt === 0 && !timeout && current.txnReplies === 0) {
            this.o.log.debug({ err: err.message }, 'cached SMTP connection was dead, retrying on a new one');
            continue;
          }
          this.o.log.warn({ host: this.o.host, port: this.o.port, err: err.message }, 'SMTP session failed');
          if (err instanceof SmtpSessionError && err.opts.permanent) return to.map((recipient) => ({ recipient, status: 'failed', detail: err.message.slice(0, 500) }));
          return deferAll(err.message);
        }
      }
    } finally {
      stopWatching?.();
      this.release(conn);
    }
  }

  /**
   * Runs `f` when `signal` aborts; returns the unsubscribe. One listener per
   * signal: the scheduler passes the same one to every delivery in flight.
   */
  private watch(signal: AbortSignal, f: () => void): () => void {
    const set = this.aborts.get(signal) ?? new Set<() => void>();
    if (!this.aborts.has(signal)) {
      this.aborts.set(signal, set);
      signal.addEventListener('abort', () => set.forEach((g) => g()), { once: true });
    }
    set.add(f);
    return () => set.delete(f);
  }

  private connection(): Connection {
    const c = new Connection(this.o, (closed) => {
      this.all.delete(closed);
      const i = this.idle.indexOf(closed);
      if (i >= 0) this.idle.splice(i, 1);
    });
    this.all.add(c);
    return c;
  }

  /** A slot, with a cached connection when one is idle. Waiters are served in FIFO order. */
  private lease(signal?: AbortSignal): Promise<Connection | undefined> {
    let idle = this.idle.pop();
    // One that failed a moment ago (its close event is still to come) is skipped.
    while (idle && !idle.usable) idle = this.idle.pop();
    if (idle) {
      idle.unpark();
      this.leases++;
      return Promise.resolve(idle);
    }
    // Waiters exist only while no connection is idle: a released one goes to them first.
    if (this.leases < this.o.maxConnections) {
      this.leases++;
      return Promise.resolve(undefined);
    }
    return new Promise((resolve, reject) => {
      const stopWatching = signal
        ? this.watch(signal, () => {
            this.waiters.splice(this.waiters.indexOf(waiter), 1);
            reject(new Error('aborted'));
          })
        : undefined;
      const waiter = {
        resolve: (c: Connection | undefined) => {
          stopWatching?.();
          resolve(c);
        },
        reject: (e: Error) => {
          stopWatching?.();
          reject(e);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Hands the slot (and the connection, if still good) to the next waiter, or parks the connection. */
  private release(conn: Connection | undefined): void {
    const good = conn?.usable && !this.closing ? conn : undefined;
    if (conn && !good) conn.quit();
    const w = this.waiters.shift();
    if (w) return w.resolve(good);
    this.leases--;
    if (good) {
      good.park();
      this.idle.push(good);
    }
  }

  /** QUIT the idle connections, give busy ones CLOSE_GRACE_MS, then destroy what is left. */
  async close(): Promise<void> {
    this.closing = true;
    for (const w of this.waiters.splice(0)) w.reject(new Error('SMTP transport closed'));
    for (const c of this.idle.splice(0)) c.quit();
    const closed = Promise.all([...this.all].map((c) => c.closed));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise((r) => (timer = setTimeout(r, CLOSE_GRACE_MS)))]);
    clearTimeout(timer);
    for (const c of this.all) c.destroy(new SmtpSessionError('SMTP transport closed'));
    await closed;
  }
}
