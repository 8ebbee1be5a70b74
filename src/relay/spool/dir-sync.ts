import { constants as fsc } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/** One directory fsync for every caller that arrived before it started. */
export class DirSyncer {
  private waiting: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  private running = false;
  private fh: FileHandle | undefined;
  batches = 0;
  constructor(
    private readonly dir: string,
    private readonly enabled: boolean,
  ) {}

  sync(): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.running || this.waiting.length === 0) return;
    this.running = true;
    const batch = this.waiting;
    this.waiting = [];
    this.batches++;
    void (async () => {
      try {
        this.fh ??= await open(this.dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
        await this.fh.sync();
        for (const w of batch) w.resolve();
      } catch (e) {
        for (const w of batch) w.reject(e);
      } finally {
        this.running = false;
        this.kick();
      }
    })();
  }

  async close(): Promise<void> {
    while (this.running) await new Promise((r) => setTimeout(r, 5));
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
  }
}
