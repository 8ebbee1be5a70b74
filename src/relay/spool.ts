// The spool: one immutable body file and one small state file per message, in
// directories an operator can read by hand (see the layout below). Like
// Postfix's cleanup, a message's files are written, fsync'ed and the directory
// fsync'ed before the relay says 250 (the state file, written last, marks it complete).
//
// Layout of <spool>/:
//   tmp/            state rewrites being written (removed at start)
//   queue/<id>.eml  the message exactly as it will be delivered (Received header added), CRLF
//   queue/<id>.json envelope + per-destination, per-recipient delivery state (rewritten atomically);
//                   a body without its state was never acknowledged (removed at start, logged)
//   attempts.log    delivery attempts in flight (see AttemptJournal)
//   dead/<id>.*     messages that cannot be delivered: 5xx from a destination, or older than
//                   spec.relay.spool.retention. Never deleted by the relay.
//   audit.log       JSON lines, see audit.ts
//
// Group commit: the fsyncs of concurrent messages run in parallel (the kernel's
// journal merges them) and one directory fsync covers every rename that
// happened before it started, so commits per second grow with concurrency.
// Per message the disk sees one round of parallel fsyncs (body, state, dir).
// State rewrites after delivery attempts are renamed into place without fsync:
// they survive a process crash; after a power loss an older state may come back,
// which means a possible duplicate delivery, never a lost message.
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, statfs, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Destination, SpooledMessage } from './types.js';

export type RecipientStatus = 'pending' | 'delivered' | 'failed' | 'excluded';

export interface RecipientState {
  status: RecipientStatus;
  /** Last reply or reason. */
  detail?: string;
  /** Exclusion rule name, for status excluded. */
  rule?: string;
  /** Epoch ms of the final outcome. */
  at?: number;
}

export interface DestinationState {
  recipients: Record<string, RecipientState>;
  attempts: number;
  /** Epoch ms before which no attempt is made. */
  nextAttemptAt: number;
  lastError?: string;
  /** Set (in memory, by load()) when an attempt's outcome is unknown: it was in flight at a crash. */
  inFlightSince?: number;
}

export interface MessageState {
  version: 1;
  id: string;
  mailFrom: string;
  rcptTo: string[];
  messageId?: string;
  sha256: string;
  size: number;
  receivedAt: number;
  client: { address: string; helo: string };
  /** [lower-case name, value] of the headers exclusion rules look at. */
  headers: Array<[string, string]>;
  deliveries: Partial<Record<Destination, DestinationState>>;
  dead?: { at: number; reason: string };
}

export class SpoolFullError extends Error {
  constructor(message: string, readonly causeCode?: string) {
    super(message);
  }
}

/** One directory fsync for every caller that arrived before it started. */
class DirSyncer {
  private waiting: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  private running = false;
  batches = 0;
  constructor(private readonly dir: string, private readonly enabled: boolean) {}

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
      let fh: FileHandle | undefined;
      try {
        fh = await open(this.dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
        await fh.sync();
        for (const w of batch) w.resolve();
      } catch (e) {
        for (const w of batch) w.reject(e);
      } finally {
        await fh?.close().catch(() => undefined);
        this.running = false;
        this.kick();
      }
    })();
  }
}

export interface SpoolOptions {
  log: Logger;
  /** fsync files and directories before acknowledging (default true; never false in production). */
  fsync?: boolean;
  /** Refuse new mail (452 4.3.1) when the file system has less free space than this. */
  minFreeBytes?: number;
}

/** Writes one message body; created by Spool.create(), finished by commit() or abort(). */
export class MessageWriter {
  private fh: FileHandle | undefined;
  private readonly hash = createHash('sha256');
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  size = 0;
  error: NodeJS.ErrnoException | undefined;

  constructor(private readonly spool: Spool, readonly id: string, readonly tmpPath: string) {}

  async open(): Promise<void> {
    this.fh = await open(this.tmpPath, 'wx', 0o600);
  }

  /** Buffers small writes; after an I/O error further data is dropped (the caller answers 452). */
  async write(buf: Buffer): Promise<void> {
    if (this.error) return;
    this.hash.update(buf);
    this.size += buf.length;
    this.pending.push(buf);
    this.pendingBytes += buf.length;
    if (this.pendingBytes >= 256 * 1024) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.error || this.pendingBytes === 0 || !this.fh) return;
    const data = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    try {
      let off = 0;
      while (off < data.length) {
        const { bytesWritten } = await this.fh.write(data, off, data.length - off);
        off += bytesWritten;
      }
    } catch (e) {
      this.error = e as NodeJS.ErrnoException;
    }
  }

  /** fsync, rename into queue/, fsync the directory. Throws SpoolFullError when the message is not on disk. */
  async commit(init: Omit<MessageState, 'version' | 'id' | 'sha256' | 'size'>): Promise<{ message: SpooledMessage; state: MessageState }> {
    await this.flush();
    const state: MessageState = { version: 1, id: this.id, sha256: this.hash.digest('hex'), size: this.size, ...init };
    try {
      if (this.error) throw this.error;
      await this.spool.commitFiles(this, state, this.fh!);
    } catch (e) {
      await this.abort();
      const err = e as NodeJS.ErrnoException;
      throw new SpoolFullError(`spool write failed: ${err.code ?? err.message}`, err.code);
    }
    this.fh = undefined;
    return { message: this.spool.toMessage(state), state };
  }

  async abort(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch(() => undefined);
    await rm(this.tmpPath, { force: true }).catch(() => undefined);
  }
}

/**
 * In-flight delivery attempts, as an append-only log (one small write per
 * attempt instead of a state rewrite): "<id> <destination> <attempt>" before
 * each attempt. At start, an attempt number above the state's `attempts` means
 * the attempt's outcome was never recorded: it may have reached the destination.
 */
export class AttemptJournal {
  private fh: FileHandle | undefined;
  private chain: Promise<void> = Promise.resolve();
  private readonly open = new Map<string, number>();
  private bytes = 0;

  constructor(readonly path: string, private readonly maxBytes = 4 * 1024 * 1024) {}

  /** Reads the previous run's attempts (key "id dest" -> highest attempt) and starts a fresh log. */
  async reset(): Promise<Map<string, number>> {
    const seen = new Map<string, number>();
    const text = await readFile(this.path, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      const [id, dest, n] = line.split(' ');
      if (!id || !dest || !n) continue;
      const key = `${id} ${dest}`;
      seen.set(key, Math.max(seen.get(key) ?? 0, Number(n) || 0));
    }
    await this.fh?.close();
    this.fh = await open(this.path, 'w', 0o600);
    this.bytes = 0;
    return seen;
  }

  /** Records an attempt before it starts (reaches the page cache: survives a process crash). */
  start(id: string, dest: Destination, attempt: number): Promise<void> {
    this.open.set(`${id} ${dest}`, attempt);
    const line = `${id} ${dest} ${attempt}\n`;
    this.chain = this.chain.then(async () => {
      if (this.bytes > this.maxBytes) await this.rotate();
      await this.fh?.write(line);
      this.bytes += line.length;
    });
    return this.chain;
  }

  /** The attempt's outcome is recorded in the state (or the message is gone). */
  finish(id: string, dest: Destination): void {
    this.open.delete(`${id} ${dest}`);
  }

  /** Rewrites the log with only the attempts still open. */
  private async rotate(): Promise<void> {
    const text = [...this.open].map(([k, n]) => `${k} ${n}\n`).join('');
    const tmp = `${this.path}.new`;
    await writeFile(tmp, text, { mode: 0o600 });
    await rename(tmp, this.path);
    await this.fh?.close();
    this.fh = await open(this.path, 'a', 0o600);
    this.bytes = text.length;
  }

  async close(): Promise<void> {
    await this.chain.catch(() => undefined);
    await this.fh?.close();
    this.fh = undefined;
  }
}

export class Spool {
  readonly tmpDir: string;
  readonly queueDir: string;
  readonly deadDir: string;
  private readonly queueSync: DirSyncer;
  private readonly fsyncEnabled: boolean;
  private seq = 0;
  private stateSeq = 0;
  /** Random per process start: ids stay unique across restarts within one millisecond. */
  private readonly instanceTag = randomBytes(2).toString('hex');
  private writes = new Map<string, Promise<void>>();
  private freeCache = { at: 0, free: Infinity };
  /** Bytes of bodies in queue/ (tracked, not scanned). */
  bytes = 0;
  readonly attempts: AttemptJournal;

  constructor(readonly dir: string, private readonly opts: SpoolOptions) {
    this.tmpDir = join(dir, 'tmp');
    this.queueDir = join(dir, 'queue');
    this.deadDir = join(dir, 'dead');
    this.fsyncEnabled = opts.fsync ?? true;
    this.queueSync = new DirSyncer(this.queueDir, this.fsyncEnabled);
    this.attempts = new AttemptJournal(join(dir, 'attempts.log'));
  }

  /** Directory fsyncs so far: with group commit, fewer than committed messages under concurrency. */
  get dirSyncBatches(): number {
    return this.queueSync.batches;
  }

  /** Creates the directories and removes never-acknowledged leftovers in tmp/. */
  async init(): Promise<void> {
    for (const d of [this.dir, this.tmpDir, this.queueDir, this.deadDir]) await mkdir(d, { recursive: true, mode: 0o700 });
    const leftovers = await readdir(this.tmpDir);
    for (const f of leftovers) await rm(join(this.tmpDir, f), { force: true });
    if (leftovers.length > 0) this.opts.log.warn({ files: leftovers.length }, 'removed unfinished files from spool tmp/ (never acknowledged to a client)');
  }

  /** Sortable by arrival: hex milliseconds, a per-process sequence and randomness against collisions across restarts. */
  newId(): string {
    const seq = (this.seq = (this.seq + 1) % 0x1000000);
    return `${Date.now().toString(16).padStart(12, '0')}${seq.toString(16).padStart(6, '0')}${this.instanceTag}`;
  }

  bodyPath(id: string): string {
    return join(this.queueDir, `${id}.eml`);
  }

  private statePath(id: string): string {
    return join(this.queueDir, `${id}.json`);
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
    const w = new MessageWriter(this, id, this.bodyPath(id));
    try {
      await w.open();
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new SpoolFullError(`cannot create spool file: ${err.code ?? err.message}`, err.code);
    }
    return w;
  }

  /**
   * @internal the commit protocol of MessageWriter. Like Postfix's cleanup, the
   * files are written under their final names in queue/ (no renames: metadata
   * operations are what a small message costs most); the body is complete
   * before its state file exists. Then body, state and directory are fsync'ed
   * in parallel: one disk round trip, shared by concurrent messages. Until
   * those fsyncs return nothing was acknowledged. What a crash leaves behind:
   * a body without state (removed at start, never acknowledged) or, after a
   * power loss, a state whose body has the wrong size or that cannot be parsed
   * (moved to dead/, never delivered).
   */
  async commitFiles(w: MessageWriter, state: MessageState, body: FileHandle): Promise<void> {
    let stateFh: FileHandle | undefined;
    try {
      stateFh = await open(this.statePath(state.id), 'wx', 0o600);
      await stateFh.writeFile(JSON.stringify(state));
      if (this.fsyncEnabled) await Promise.all([body.sync(), stateFh.sync(), this.queueSync.sync()]);
    } catch (e) {
      await rm(this.statePath(state.id), { force: true }).catch(() => undefined);
      await rm(w.tmpPath, { force: true }).catch(() => undefined);
      throw e;
    } finally {
      await stateFh?.close().catch(() => undefined);
      await body.close().catch(() => undefined);
    }
    this.bytes += state.size;
  }

  toMessage(state: MessageState): SpooledMessage {
    return {
      id: state.id,
      path: this.bodyPath(state.id),
      mailFrom: state.mailFrom,
      rcptTo: state.rcptTo,
      ...(state.messageId !== undefined ? { messageId: state.messageId } : {}),
      sha256: state.sha256,
      size: state.size,
      receivedAt: state.receivedAt,
    };
  }

  /** Rewrites a state file atomically (tmp + rename), serialised per message. */
  saveState(state: MessageState): Promise<void> {
    const snapshot = JSON.stringify(state);
    const prev = this.writes.get(state.id) ?? Promise.resolve();
    const next = prev.then(async () => {
      const tmp = join(this.tmpDir, `${state.id}.${(this.stateSeq = (this.stateSeq + 1) % 1e9)}.json`);
      try {
        await writeFile(tmp, snapshot, { mode: 0o600 });
        await rename(tmp, this.statePath(state.id));
      } catch (e) {
        await rm(tmp, { force: true }).catch(() => undefined);
        this.opts.log.error({ id: state.id, err: (e as Error).message }, 'could not update spool state (kept in memory; will retry)');
        throw e;
      }
    });
    const tail = next.catch(() => undefined);
    this.writes.set(state.id, tail);
    void tail.then(() => {
      if (this.writes.get(state.id) === tail) this.writes.delete(state.id);
    });
    return next;
  }

  /** The message reached every destination it needs: it leaves the spool. */
  async remove(state: MessageState): Promise<void> {
    await (this.writes.get(state.id) ?? Promise.resolve());
    await unlink(this.statePath(state.id)).catch(ignoreEnoent);
    await unlink(this.bodyPath(state.id)).catch(ignoreEnoent);
    this.bytes -= state.size;
  }

  /** Moves a message and its state (with the reason) to dead/. */
  async moveToDead(state: MessageState, reason: string, now = Date.now()): Promise<void> {
    await (this.writes.get(state.id) ?? Promise.resolve());
    state.dead = { at: now, reason };
    await writeFile(join(this.deadDir, `${state.id}.json`), JSON.stringify(state, null, 2), { mode: 0o600 });
    await rename(this.bodyPath(state.id), join(this.deadDir, `${state.id}.eml`)).catch(ignoreEnoent);
    await unlink(this.statePath(state.id)).catch(ignoreEnoent);
    this.bytes -= state.size;
  }

  /**
   * Reads queue/ at start. A body without state was never acknowledged (the
   * crash came between the two renames, before the 250): removed, logged. A
   * state without body cannot be delivered: moved to dead/.
   */
  async load(): Promise<MessageState[]> {
    const files = await readdir(this.queueDir);
    const bodies = new Set(files.filter((f) => f.endsWith('.eml')).map((f) => f.slice(0, -4)));
    const states: MessageState[] = [];
    for (const f of files.filter((f) => f.endsWith('.json')).sort()) {
      const id = f.slice(0, -5);
      let state: MessageState;
      try {
        state = JSON.parse(await readFile(join(this.queueDir, f), 'utf8')) as MessageState;
      } catch (e) {
        this.opts.log.error({ file: f, err: (e as Error).message }, 'unreadable spool state moved to dead/');
        await rename(join(this.queueDir, f), join(this.deadDir, `${id}.corrupt.json`)).catch(ignoreEnoent);
        if (bodies.delete(id)) await rename(this.bodyPath(id), join(this.deadDir, `${id}.eml`)).catch(ignoreEnoent);
        continue;
      }
      if (bodies.has(id)) {
        const actual = await stat(this.bodyPath(id)).then((st) => st.size, () => -1);
        if (actual !== state.size) {
          this.opts.log.error({ id, expected: state.size, actual }, 'spool body size does not match its state (torn write before a crash): moved to dead/');
          bodies.delete(id);
          await rename(join(this.queueDir, f), join(this.deadDir, `${id}.torn.json`)).catch(ignoreEnoent);
          await rename(this.bodyPath(id), join(this.deadDir, `${id}.torn.eml`)).catch(ignoreEnoent);
          continue;
        }
      }
      if (!bodies.delete(id)) {
        this.opts.log.error({ id }, 'spool state without message body moved to dead/');
        await rename(join(this.queueDir, f), join(this.deadDir, `${id}.nobody.json`)).catch(ignoreEnoent);
        continue;
      }
      states.push(state);
      this.bytes += state.size;
    }
    for (const id of bodies) {
      this.opts.log.warn({ id }, 'removed a spool body without state (crash before the 250: the client was never told it was accepted)');
      await rm(this.bodyPath(id), { force: true });
    }
    const attempted = await this.attempts.reset();
    for (const state of states) {
      for (const [dest, ds] of Object.entries(state.deliveries)) {
        const n = attempted.get(`${state.id} ${dest}`);
        if (ds && n !== undefined && n > ds.attempts) ds.inFlightSince ??= state.receivedAt;
      }
    }
    return states;
  }
}

function ignoreEnoent(e: unknown): void {
  if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
}

/** Lists a spool directory without a running relay (for `mail-continuity queue`). */
export async function readSpoolDir(dir: string, which: 'queue' | 'dead'): Promise<MessageState[]> {
  const d = join(dir, which);
  let files: string[];
  try {
    files = await readdir(d);
  } catch {
    return [];
  }
  const out: MessageState[] = [];
  for (const f of files.filter((f) => f.endsWith('.json')).sort()) {
    try {
      out.push(JSON.parse(await readFile(join(d, f), 'utf8')) as MessageState);
    } catch {
      // being rewritten or corrupt: skip in a listing
    }
  }
  return out;
}
