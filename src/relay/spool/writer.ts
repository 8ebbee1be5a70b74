// Writes one message into its queue file (Postfix's cleanup writing the queue
// file): small messages in one write at commit, larger ones streamed; the
// commit itself (fsync of file and directory) is the spool's, behind CommitPort.
import { createHash } from 'node:crypto';
import { rm, type FileHandle } from 'node:fs/promises';
import type { SpooledMessage } from '../types.js';
import type { MemoryBudget } from './memory-budget.js';
import { trailer } from './queue-file.js';
import { SpoolFullError, type MessageState } from './state.js';

/** What a writer needs of the spool: the commit to stable storage, and the message the state becomes. */
export interface CommitPort {
  /** File and directory on stable storage (fsync'ed); throws when they are not. */
  commitFile(fh: FileHandle, size: number): Promise<void>;
  toMessage(state: MessageState): SpooledMessage;
  /** Keeps the body in memory while the budget allows. */
  cacheBody(message: SpooledMessage, body: Buffer): void;
  /** Message bytes being received that may stay in memory (beyond: written at once). */
  readonly receiving: MemoryBudget;
}

/** Bodies up to this size are written in one write at commit, and may be cached. */
const BUFFERED_BYTES = 256 * 1024;

/** Writes one message; created by Spool.create(), finished by commit() or abort(). */
export class MessageWriter {
  private readonly hash = createHash('sha256');
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes of `pending` taken from the port's receiving budget. */
  private held = 0;
  /** Bytes already in the file (a message larger than BUFFERED_BYTES streams). */
  private written = 0;
  size = 0;
  error: NodeJS.ErrnoException | undefined;

  constructor(
    private readonly port: CommitPort,
    readonly id: string,
    readonly path: string,
    private fh: FileHandle | undefined,
  ) {}

  /**
   * Buffers small writes while the relay's receiving budget allows (beyond it, or past
   * BUFFERED_BYTES, the data goes to the file at once); after an I/O error further data
   * is dropped (the caller answers 452).
   */
  async write(buf: Buffer): Promise<void> {
    if (this.error) return;
    this.hash.update(buf);
    this.size += buf.length;
    this.pending.push(buf);
    this.pendingBytes += buf.length;
    const kept = this.pendingBytes < BUFFERED_BYTES && this.port.receiving.take(buf.length);
    if (kept) this.held += buf.length;
    else await this.flush();
  }

  private release(): void {
    this.port.receiving.give(this.held);
    this.held = 0;
  }

  private async flush(extra?: Buffer): Promise<Buffer | undefined> {
    if (this.error || !this.fh) return undefined;
    const parts = extra ? [...this.pending, extra] : this.pending;
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    this.pending = [];
    this.pendingBytes = 0;
    this.release();
    try {
      for (let off = 0; off < data.length; ) off += (await this.fh.write(data, off, data.length - off, this.written + off)).bytesWritten;
      this.written += data.length;
    } catch (e) {
      this.error = e as NodeJS.ErrnoException;
    }
    return data;
  }

  /** Writes the trailer, fsyncs file and directory. Throws SpoolFullError when the message is not on disk. */
  async commit(init: Omit<MessageState, 'version' | 'id' | 'sha256' | 'size'>): Promise<{ message: SpooledMessage; state: MessageState }> {
    const state: MessageState = { version: 2, id: this.id, sha256: this.hash.digest('hex'), size: this.size, ...init };
    const whole = this.written === 0;
    const data = await this.flush(trailer(state));
    const fh = this.fh!;
    try {
      if (this.error) throw this.error;
      await this.port.commitFile(fh, state.size);
    } catch (e) {
      await this.abort();
      const err = e as NodeJS.ErrnoException;
      throw new SpoolFullError(`spool write failed: ${err.code ?? err.message}`, err.code);
    }
    this.fh = undefined;
    void fh.close().catch(() => undefined);
    const message = this.port.toMessage(state);
    if (whole && data) this.port.cacheBody(message, data.subarray(0, state.size));
    return { message, state };
  }

  async abort(): Promise<void> {
    this.pending = [];
    this.pendingBytes = 0;
    this.release();
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch(() => undefined);
    await rm(this.path, { force: true }).catch(() => undefined);
  }
}
