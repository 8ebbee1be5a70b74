/** Promises in flight (their outcome does not matter), so that a stop can wait for them. */
export class Tracked {
  private readonly running = new Set<Promise<void>>();

  get size(): number {
    return this.running.size;
  }

  add(p: Promise<unknown>): void {
    const t = p.then(
      () => undefined,
      () => undefined,
    );
    this.running.add(t);
    void t.then(() => this.running.delete(t));
  }

  /** Waits until none is left, also those added meanwhile, for at most timeoutMs. */
  async settled(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.running.size > 0 && Date.now() < deadline) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all([...this.running]), new Promise((r) => (timer = setTimeout(r, deadline - Date.now())))]);
      clearTimeout(timer);
    }
  }
}
