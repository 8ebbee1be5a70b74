// The spool: one file per message, in directories an operator can read by
// hand, and one journal of delivery progress. Like Postfix's cleanup, a
// message is written and fsync'ed, and its directory fsync'ed, before the
// relay says 250.
//
// Layout of <spool>/:
//   queue/<id>.msg  the message exactly as it will be delivered (Received header added, CRLF),
//                   `size` bytes, then the envelope as a trailer (see below): one file, one
//                   write and one fsync per message
//   journal.log     delivery progress, JSON lines, the latest line of a message wins
//                   (see Journal); compacted when it grows
//   dead/<id>.eml   messages that cannot be delivered (5xx from a destination, or older
//   dead/<id>.json  than spec.relay.spool.retention), with their state and the reason.
//                   Bounded in age and size by dead.ts (mail-continuity dead export|purge).
//   audit.log       JSON lines, see audit.ts
//
// The trailer after the message's `size` bytes:
//   #envelope {"version":2,"id":...,"size":N,"sha256":...,"rcptTo":[...],...}\n
//   #end N\n
// `tail -n 2 queue/<id>.msg` shows the envelope, `head -c N` the message. A
// file without a valid trailer was never acknowledged (the relay stopped while
// receiving it): removed at start, with a log line.
//
// Group commit: the fsyncs of concurrent messages run in parallel (the kernel's
// journal merges them) and one directory fsync covers every file created before
// it started, so commits per second grow with concurrency.
// Journal lines are written without fsync, in batches (one write per turn of
// the event loop): they survive a crash of the process; after a power loss an
// older state may come back, which means a possible duplicate delivery, never
// a lost message.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, statfs, truncate, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { SpooledMessage } from '../types.js';
import { DirSyncer } from './dir-sync.js';
import { Journal } from './journal.js';
import { MemoryBudget } from './memory-budget.js';
import { trailer } from './queue-file.js';
import { readQueue } from './read.js';
import { SpoolFullError, type MessageState } from './state.js';
import { MessageWriter, type CommitPort } from './writer.js';

export interface SpoolOptions {
  log: Logger;
  /** fsync files and directories before acknowledging (default true; never false in production). */
  fsync?: boolean;
  /** Refuse new mail (452 4.3.1) when the file system has less free space than this. */
  minFreeBytes?: number;
  /** Message bodies kept in memory for their first delivery attempts (default 32 MiB). */
  bodyCacheBytes?: number;
  /** Journal size that triggers a compaction (default 16 MiB). */
  journalMaxBytes?: number;
  /** Message bytes being received that may wait in memory for their one write (default 32 MiB). */
  receivingBytes?: number;
}

export class Spool implements CommitPort {
  readonly queueDir: string;
  readonly deadDir: string;
  private readonly queueSync: DirSyncer;
  private readonly fsyncEnabled: boolean;
  private seq = 0;
  /** Random per process start: ids stay unique across restarts within one millisecond. */
  private readonly instanceTag = randomBytes(2).toString('hex');
  private freeCache = { at: 0, free: Infinity };
  private readonly cacheBudget: number;
  /** Bytes of messages in queue/ (tracked, not scanned). */
  bytes = 0;
  /** Bytes of bodies held in memory. */
  cachedBytes = 0;
  readonly journal: Journal;
  readonly receiving: MemoryBudget;

  constructor(
    readonly dir: string,
    private readonly opts: SpoolOptions,
  ) {
    this.queueDir = join(dir, 'queue');
    this.deadDir = join(dir, 'dead');
    this.fsyncEnabled = opts.fsync ?? true;
    this.cacheBudget = opts.bodyCacheBytes ?? 32 * 1024 * 1024;
    this.receiving = new MemoryBudget(opts.receivingBytes ?? 32 * 1024 * 1024);
    this.queueSync = new DirSyncer(this.queueDir, this.fsyncEnabled);
    this.journal = new Journal(join(dir, 'journal.log'), opts.journalMaxBytes ?? 16 * 1024 * 1024, opts.log);
  }

  /** Directory fsyncs so far: with group commit, fewer than committed messages under concurrency. */
  get dirSyncBatches(): number {
    return this.queueSync.batches;
  }

  async init(): Promise<void> {
    for (const d of [this.dir, this.queueDir, this.deadDir]) await mkdir(d, { recursive: true, mode: 0o700 });
  }

  /** Sortable by arrival: hex milliseconds, a per-process sequence and randomness against collisions across restarts. */
  newId(): string {
    const seq = (this.seq = (this.seq + 1) % 0x1000000);
    return `${Date.now().toString(16).padStart(12, '0')}${seq.toString(16).padStart(6, '0')}${this.instanceTag}`;
  }

  messagePath(id: string): string {
    return join(this.queueDir, `${id}.msg`);
  }

  /** Free bytes on the spool's file system (cached for a second); Infinity when unknown. */
  async freeBytes(): Promise<number> {
    const now = Date.now();
    if (now - this.freeCache.at > 1000) {
      try {
        const s = await statfs(this.dir);
        this.freeCache = { at: now, free: s.bavail * s.bsize };
      } catch {
        this.freeCache = { at: now, free: Infinity };
      }
    }
    return this.freeCache.free;
  }

  /** True when there is room for a message of `size` bytes above the configured reserve. */
  async hasRoom(size = 0): Promise<boolean> {
    return (await this.freeBytes()) - size >= (this.opts.minFreeBytes ?? 0);
  }

  async create(): Promise<MessageWriter> {
    const id = this.newId();
    const path = this.messagePath(id);
    try {
      return new MessageWriter(this, id, path, await open(path, 'wx', 0o600));
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new SpoolFullError(`cannot create spool file: ${err.code ?? err.message}`, err.code);
    }
  }

  /** @internal MessageWriter's commit: file and directory fsync'ed in parallel, one disk round trip. */
  async commitFile(fh: FileHandle, size: number): Promise<void> {
    if (this.fsyncEnabled) await Promise.all([fh.datasync(), this.queueSync.sync()]);
    this.bytes += size;
  }

  toMessage(state: MessageState): SpooledMessage {
    return {
      id: state.id,
      path: this.messagePath(state.id),
      mailFrom: state.mailFrom,
      rcptTo: state.rcptTo,
      ...(state.messageId !== undefined ? { messageId: state.messageId } : {}),
      sha256: state.sha256,
      size: state.size,
      receivedAt: state.receivedAt,
      ...(state.client ? { clientAddress: state.client.address } : {}),
    };
  }

  /** @internal Keeps the body in memory while the budget allows. */
  cacheBody(message: SpooledMessage, body: Buffer): void {
    if (this.cachedBytes + body.length > this.cacheBudget) return;
    message.body = body;
    this.cachedBytes += body.length;
  }

  /** The message waits (or is done): its body is read from the file from now on. */
  releaseBody(message: SpooledMessage): void {
    if (!message.body) return;
    this.cachedBytes -= message.body.length;
    delete message.body;
  }

  /** Records delivery progress (journal line, batched, no fsync). */
  saveState(state: MessageState): Promise<void> {
    return this.journal.save(state).catch((e: unknown) => {
      this.opts.log.error({ id: state.id, err: (e as Error).message }, 'could not write the spool journal (state kept in memory; written again with the next change)');
      throw e;
    });
  }

  /** The message reached every destination it needs: it leaves the spool. */
  async remove(state: MessageState, message?: SpooledMessage): Promise<void> {
    if (message) this.releaseBody(message);
    await unlink(this.messagePath(state.id)).catch(ignoreEnoent);
    this.bytes -= state.size;
  }

  /** Moves a message to dead/: the message as dead/ID.eml, its state with the reason as dead/ID.json. */
  async moveToDead(state: MessageState, reason: string, now = Date.now(), message?: SpooledMessage): Promise<void> {
    if (message) this.releaseBody(message);
    state.dead = { at: now, reason };
    await writeFile(join(this.deadDir, `${state.id}.json`), JSON.stringify(state, null, 2), { mode: 0o600 });
    const eml = join(this.deadDir, `${state.id}.eml`);
    try {
      await rename(this.messagePath(state.id), eml);
      await truncate(eml, state.size);
    } catch (e) {
      ignoreEnoent(e);
    }
    this.bytes -= state.size;
  }

  /**
   * Reads queue/ and the journal at start. A file without a valid trailer
   * was never acknowledged (the relay stopped while receiving it): removed,
   * logged. Spools of the first format (ID.eml + ID.json) are converted.
   */
  async load(): Promise<MessageState[]> {
    await this.convertV1();
    const { states, incomplete, attempts } = await readQueue(this.dir);
    for (const f of incomplete) {
      this.opts.log.warn({ file: f }, 'removed an incomplete spool file (the relay stopped while receiving it: the client was never told it was accepted)');
      await rm(join(this.queueDir, f), { force: true });
    }
    for (const state of states) {
      this.bytes += state.size;
      for (const [dest, ds] of Object.entries(state.deliveries)) {
        const n = attempts.get(`${state.id} ${dest}`);
        if (ds && n !== undefined && n > ds.attempts) ds.inFlightSince ??= state.receivedAt;
      }
    }
    await this.journal.reset(states);
    return states;
  }

  /** The spool's first format kept the state beside the body: append it as the trailer. */
  private async convertV1(): Promise<void> {
    const files = await readdir(this.queueDir);
    const v1 = files.filter((f) => f.endsWith('.json'));
    if (v1.length === 0) return;
    for (const f of v1) {
      const id = f.slice(0, -5);
      const eml = join(this.queueDir, `${id}.eml`);
      try {
        const state = { ...(JSON.parse(await readFile(join(this.queueDir, f), 'utf8')) as Omit<MessageState, 'version'>), version: 2 as const };
        const fh = await open(eml, 'a');
        await fh.write(trailer(state));
        await fh.sync();
        await fh.close();
        await rename(eml, this.messagePath(id));
        await unlink(join(this.queueDir, f));
      } catch (e) {
        this.opts.log.error({ file: f, err: (e as Error).message }, 'could not convert a spool entry of the first format: moved to dead/');
        await rename(join(this.queueDir, f), join(this.deadDir, f)).catch(() => undefined);
        await rename(eml, join(this.deadDir, `${id}.eml`)).catch(() => undefined);
      }
    }
    for (const f of await readdir(this.queueDir)) {
      if (!f.endsWith('.eml')) continue;
      this.opts.log.warn({ file: f }, 'removed a spool body without state (the relay stopped before its 250: the client was never told it was accepted)');
      await rm(join(this.queueDir, f), { force: true });
    }
    await rm(join(this.dir, 'tmp'), { recursive: true, force: true });
    await rm(join(this.dir, 'attempts.log'), { force: true });
    this.opts.log.info({ messages: v1.length }, 'converted the spool to one file per message');
  }

  async close(): Promise<void> {
    await this.journal.close();
    await this.queueSync.close();
  }
}

function ignoreEnoent(e: unknown): void {
  if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
}
