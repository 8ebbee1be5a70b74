// An append-only file written in batches: everything appended during one turn
// of the event loop goes out in one write(2), in call order. The spool's
// journal and the audit log use it; on a busy relay that turns thousands of
// small writes per second into a few hundred.
import { open, type FileHandle } from 'node:fs/promises';

export class AppendFile {
  private fh: FileHandle | undefined;
  private lines: string[] = [];
  private waiters: Array<{ resolve: () => void; reject: (e: unknown) => void; sync: boolean }> = [];
  private chain: Promise<void> = Promise.resolve();
  private scheduled = false;
  /** Bytes in the file (as written through this object). */
  bytes = 0;

  constructor(
    readonly path: string,
    /** Runs before each batch is written, in the chain (e.g. a rotation that replaces the file). */
    private readonly beforeWrite?: () => Promise<'write' | 'drop'>,
  ) {}

  /** Opens for appending; 'w' starts the file empty. */
  async open(flags: 'a' | 'w' = 'a'): Promise<void> {
    await this.fh?.close();
    this.fh = await open(this.path, flags, 0o600);
    this.bytes = (await this.fh.stat()).size;
  }

  /**
   * Resolves when the line is in the file (page cache: it survives a crash of
   * the process, not of the machine); with `sync`, once it is on stable storage
   * (one fdatasync for the batch: group commit).
   */
  append(line: string, opts: { sync?: boolean } = {}): Promise<void> {
    this.lines.push(line);
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject, sync: opts.sync === true }));
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.chain = this.chain.then(() => this.writeBatch());
      });
    }
    return done;
  }

  /** Runs `f` with no batch being written (f may replace the file and reopen it). */
  exclusive<T>(f: () => Promise<T>): Promise<T> {
    const run = this.chain.then(f);
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async writeBatch(): Promise<void> {
    const lines = this.lines;
    const waiters = this.waiters;
    if (lines.length === 0) return;
    this.lines = [];
    this.waiters = [];
    try {
      if ((await this.beforeWrite?.()) !== 'drop') {
        const text = lines.join('');
        if (!this.fh) await this.open('a');
        await this.fh!.write(text);
        this.bytes += Buffer.byteLength(text);
        if (waiters.some((w) => w.sync)) await this.fh!.datasync();
      }
      for (const w of waiters) w.resolve();
    } catch (e) {
      for (const w of waiters) w.reject(e);
    }
  }

  /** Writes what is queued and closes. */
  async close(): Promise<void> {
    await new Promise((r) => setImmediate(r));
    await this.chain;
    await this.fh?.close();
    this.fh = undefined;
  }
}
