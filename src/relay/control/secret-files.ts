// Mounted Secrets, re-read when they change: the kubelet updates a Secret
// volume by an atomic swap of its ..data symlink (cert-manager renews a
// certificate in place that way), so a cheap stat of each path (it follows the
// links: a swap shows as another inode) every tuning.secretPollMs tells a
// change; the content is compared before anyone is told. A reader that fails
// (a key that does not match the certificate yet, half-way through an update)
// keeps what it had and is asked again at the next poll.
import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';

export interface FileStamp {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

/** True when the file is another one or was written since `before` (pure). */
export function stampChanged(before: FileStamp | undefined, now: FileStamp | undefined): boolean {
  if (!before || !now) return before !== now;
  return before.ino !== now.ino || before.size !== now.size || before.mtimeMs !== now.mtimeMs || before.ctimeMs !== now.ctimeMs;
}

async function stampOf(path: string): Promise<FileStamp | undefined> {
  const s = await stat(path).catch(() => undefined);
  return s && { ino: s.ino, size: s.size, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs };
}

interface Watch {
  name: string;
  paths: string[];
  stamps: Array<FileStamp | undefined>;
  /** Reads the files again and applies them; throws to be retried at the next poll. */
  reload: () => Promise<void>;
  pending: boolean;
}

export class SecretFiles {
  private readonly watches: Watch[] = [];
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> = Promise.resolve();

  constructor(private readonly log: Logger) {}

  /** Calls `reload` whenever one of `paths` changes (after it was applied once at start by the caller). */
  async watch(name: string, paths: Array<string | undefined>, reload: () => Promise<void>): Promise<void> {
    const present = paths.filter((p): p is string => p !== undefined);
    if (present.length === 0) return;
    this.watches.push({ name, paths: present, stamps: await Promise.all(present.map(stampOf)), reload, pending: false });
  }

  start(intervalMs: number): void {
    this.timer = setInterval(() => {
      this.polling = this.poll();
    }, intervalMs);
    this.timer.unref();
  }

  /** One look at every watched file (the timer's; tests may call it). */
  async poll(): Promise<void> {
    for (const w of this.watches) {
      const stamps = await Promise.all(w.paths.map(stampOf));
      if (!w.pending && !stamps.some((s, i) => stampChanged(w.stamps[i], s))) continue;
      w.stamps = stamps;
      try {
        await w.reload();
        w.pending = false;
        this.log.info({ secret: w.name, files: w.paths }, 'mounted secret changed: reloaded');
      } catch (e) {
        w.pending = true;
        this.log.warn({ secret: w.name, files: w.paths, err: (e as Error).message }, 'mounted secret changed but cannot be used yet: the previous one stays, retried at the next poll');
      }
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.polling;
  }
}
