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
//                   Never deleted by the relay.
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
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc, createReadStream, type ReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, statfs, truncate, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { AppendFile } from '../../lib/append-file.js';
import { forEachLimit } from '../../lib/for-each-limit.js';
import type { Destination, SpooledMessage } from '../types.js';

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
  version: 2;
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
  constructor(
    message: string,
    readonly causeCode?: string,
  ) {
    super(message);
  }
}

/** One directory fsync for every caller that arrived before it started. */
class DirSyncer {
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
}

/** Bodies up to this size are written in one write at commit, and may be cached. */
const BUFFERED_BYTES = 256 * 1024;

function trailer(state: MessageState): Buffer {
  return Buffer.from(`#envelope ${JSON.stringify(state)}\n#end ${state.size}\n`, 'utf8');
}

/** Writes one message; created by Spool.create(), finished by commit() or abort(). */
export class MessageWriter {
  private readonly hash = createHash('sha256');
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes already in the file (a message larger than BUFFERED_BYTES streams). */
  private written = 0;
  size = 0;
  error: NodeJS.ErrnoException | undefined;

  constructor(
    private readonly spool: Spool,
    readonly id: string,
    readonly path: string,
    private fh: FileHandle | undefined,
  ) {}

  /** Buffers small writes; after an I/O error further data is dropped (the caller answers 452). */
  async write(buf: Buffer): Promise<void> {
    if (this.error) return;
    this.hash.update(buf);
    this.size += buf.length;
    this.pending.push(buf);
    this.pendingBytes += buf.length;
    if (this.pendingBytes >= BUFFERED_BYTES) await this.flush();
  }

  private async flush(extra?: Buffer): Promise<Buffer | undefined> {
    if (this.error || !this.fh) return undefined;
    const parts = extra ? [...this.pending, extra] : this.pending;
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    this.pending = [];
    this.pendingBytes = 0;
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
      await this.spool.commitFile(fh, state.size);
    } catch (e) {
      await this.abort();
      const err = e as NodeJS.ErrnoException;
      throw new SpoolFullError(`spool write failed: ${err.code ?? err.message}`, err.code);
    }
    this.fh = undefined;
    void fh.close().catch(() => undefined);
    const message = this.spool.toMessage(state);
    if (whole && data) this.spool.cacheBody(message, data.subarray(0, state.size));
    return { message, state };
  }

  async abort(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch(() => undefined);
    await rm(this.path, { force: true }).catch(() => undefined);
  }
}

type JournalRecord = { id: string; attempt: Destination; n: number } | { id: string; deliveries: MessageState['deliveries'] };

const attemptLine = (id: string, attempt: Destination, n: number) => `${JSON.stringify({ id, attempt, n } satisfies JournalRecord)}\n`;
const deliveriesLine = (s: MessageState) => `${JSON.stringify({ id: s.id, deliveries: s.deliveries } satisfies JournalRecord)}\n`;

/**
 * Delivery progress as JSON lines, the latest line of a message winning:
 * `{"id","attempt":dest,"n":k}` before attempt k starts (an attempt above the
 * state's `attempts` at start means its outcome was never recorded: it may
 * have reached the destination), and `{"id","deliveries":{...}}` after an
 * outcome. Compaction rewrites the file with one line per live message
 * (from `live`) and the attempts still open, once the file has grown past
 * maxBytes and past twice its size after the last compaction (a large queue's
 * snapshot alone can be larger than maxBytes).
 */
export class Journal {
  private readonly file: AppendFile;
  private readonly open = new Map<string, number>();
  private live: (() => Iterable<MessageState>) | undefined;
  /** Size right after the last rewrite: a large queue's snapshot alone may pass maxBytes. */
  private compactedBytes = 0;
  compactions = 0;

  constructor(
    readonly path: string,
    private readonly maxBytes: number,
    private readonly log: Logger,
  ) {
    this.file = new AppendFile(path, async () => ((await this.compactIfLarge()) ? 'drop' : 'write'));
  }

  /** The live messages, for compaction (the scheduler's states). */
  setLive(f: () => Iterable<MessageState>): void {
    this.live = f;
  }

  /** Records an attempt before it starts. */
  attempt(id: string, dest: Destination, n: number): Promise<void> {
    this.open.set(`${id} ${dest}`, n);
    return this.file.append(attemptLine(id, dest, n));
  }

  /** The attempt's outcome is recorded (or the message is gone). */
  finished(id: string, dest: Destination): void {
    this.open.delete(`${id} ${dest}`);
  }

  save(state: MessageState): Promise<void> {
    return this.file.append(deliveriesLine(state));
  }

  /** Starts the journal afresh from the loaded states (the previous run's lines are folded into them). */
  async reset(states: readonly MessageState[]): Promise<void> {
    await this.file.exclusive(() => this.rewrite(states));
  }

  /** A new file holds everything the queued batch would have said: the caller drops the batch. */
  private async compactIfLarge(): Promise<boolean> {
    if (this.file.bytes < Math.max(this.maxBytes, 2 * this.compactedBytes) || !this.live) return false;
    this.compactions++;
    const t0 = Date.now();
    const n = await this.rewrite(this.live());
    this.log.info({ messages: n, ms: Date.now() - t0 }, 'spool journal compacted');
    return true;
  }

  private async rewrite(states: Iterable<MessageState>): Promise<number> {
    const lines: string[] = [];
    let n = 0;
    for (const s of states) {
      n++;
      lines.push(deliveriesLine(s));
      for (const [dest, ds] of Object.entries(s.deliveries)) if (ds?.inFlightSince) lines.push(attemptLine(s.id, dest as Destination, ds.attempts + 1));
    }
    for (const [key, k] of this.open) {
      const [id, attempt] = key.split(' ') as [string, Destination];
      lines.push(attemptLine(id, attempt, k));
    }
    const tmp = `${this.path}.new`;
    await writeFile(tmp, lines.join(''), { mode: 0o600 });
    await rename(tmp, this.path);
    await this.file.open('a');
    this.compactedBytes = this.file.bytes;
    return n;
  }

  close(): Promise<void> {
    return this.file.close();
  }
}

/** Reads a journal into a map of the latest deliveries and the highest attempt per "id dest". */
async function readJournal(path: string): Promise<{ deliveries: Map<string, MessageState['deliveries']>; attempts: Map<string, number> }> {
  const deliveries = new Map<string, MessageState['deliveries']>();
  const attempts = new Map<string, number>();
  const text = await readFile(path, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    if (!line) continue;
    let r: JournalRecord;
    try {
      r = JSON.parse(line) as JournalRecord;
    } catch {
      continue; // the last line of a crash may be torn
    }
    if ('deliveries' in r) deliveries.set(r.id, r.deliveries);
    else if ('attempt' in r) {
      const key = `${r.id} ${r.attempt}`;
      attempts.set(key, Math.max(attempts.get(key) ?? 0, r.n));
    }
  }
  return { deliveries, attempts };
}

/** The envelope in a queue file's trailer; undefined when the file is incomplete. */
async function readTrailer(path: string): Promise<MessageState | undefined> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, 'r');
    const { size: fileSize } = await fh.stat();
    const tailLen = Math.min(fileSize, 32);
    const tail = Buffer.alloc(tailLen);
    await fh.read(tail, 0, tailLen, fileSize - tailLen);
    const m = /#end (\d+)\n$/.exec(tail.toString('latin1'));
    if (!m) return undefined;
    const size = Number(m[1]);
    const endLen = m[0].length;
    const prefix = '#envelope ';
    const envLen = fileSize - endLen - size;
    if (envLen <= prefix.length + 1) return undefined;
    const env = Buffer.alloc(envLen);
    await fh.read(env, 0, envLen, size);
    const text = env.toString('utf8');
    if (!text.startsWith(prefix) || !text.endsWith('\n')) return undefined;
    const state = JSON.parse(text.slice(prefix.length, -1)) as MessageState;
    return state.size === size && typeof state.id === 'string' ? state : undefined;
  } catch {
    return undefined;
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** The queue: states from the trailers, progress from the journal; files without a valid trailer listed apart. */
async function readQueue(dir: string): Promise<{ states: MessageState[]; incomplete: string[]; attempts: Map<string, number> }> {
  const queueDir = join(dir, 'queue');
  const files = (await readdir(queueDir).catch(() => [] as string[])).filter((f) => f.endsWith('.msg')).sort();
  const found = new Map<string, MessageState>();
  const incomplete: string[] = [];
  await forEachLimit(files, 32, async (f) => {
    const state = await readTrailer(join(queueDir, f));
    if (state && state.id === f.slice(0, -4)) found.set(f, state);
    else incomplete.push(f);
  });
  const { deliveries, attempts } = await readJournal(join(dir, 'journal.log'));
  const states: MessageState[] = [];
  for (const f of files) {
    const s = found.get(f);
    if (!s) continue;
    const d = deliveries.get(s.id);
    if (d) s.deliveries = d;
    states.push(s);
  }
  return { states, incomplete: incomplete.sort(), attempts };
}

export class Spool {
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

  constructor(
    readonly dir: string,
    private readonly opts: SpoolOptions,
  ) {
    this.queueDir = join(dir, 'queue');
    this.deadDir = join(dir, 'dead');
    this.fsyncEnabled = opts.fsync ?? true;
    this.cacheBudget = opts.bodyCacheBytes ?? 32 * 1024 * 1024;
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

/** The message's bytes from its spool file: [0, size), the trailer after them left out. */
export function messageFileStream(message: Pick<SpooledMessage, 'path' | 'size'>): ReadStream {
  return createReadStream(message.path, { start: 0, end: message.size - 1 });
}

/** Lists a spool directory without a running relay (for `mail-continuity queue`). */
export async function readSpoolDir(dir: string, which: 'queue' | 'dead'): Promise<MessageState[]> {
  if (which === 'queue') return (await readQueue(dir)).states;
  const d = join(dir, 'dead');
  const files = await readdir(d).catch(() => [] as string[]);
  const out: MessageState[] = [];
  for (const f of files.filter((f) => f.endsWith('.json')).sort()) {
    try {
      out.push(JSON.parse(await readFile(join(d, f), 'utf8')) as MessageState);
    } catch {
      // being written or corrupt: skip in a listing
    }
  }
  return out;
}

/** One message of a spool directory (for `mail-continuity queue show`): its state and the file holding its bytes [0, size). */
export async function readSpoolMessage(dir: string, which: 'queue' | 'dead', id: string): Promise<{ state: MessageState; path: string } | undefined> {
  if (which === 'queue') {
    const path = join(dir, 'queue', `${id}.msg`);
    const state = await readTrailer(path);
    if (!state) return undefined;
    const d = (await readJournal(join(dir, 'journal.log'))).deliveries.get(id);
    if (d) state.deliveries = d;
    return { state, path };
  }
  const text = await readFile(join(dir, 'dead', `${id}.json`), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : { state: JSON.parse(text) as MessageState, path: join(dir, 'dead', `${id}.eml`) };
}
