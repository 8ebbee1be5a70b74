// Append-only, tamper-evident audit log (JSON lines): every copy that left for
// the backup (Google), every message an exclusion rule kept out of it, and why.
// Write-ahead: a "copy-intent" line is on stable storage before a copy starts;
// "copied-to-backup" follows when the backup has it. Each line carries the hash
// of the one before (chain.ts); the file is rotated by size and old files are
// removed by the retention (segments.ts). Lines are written in call order,
// batched: everything recorded during one turn of the event loop goes out in
// one write(2), and one fdatasync when any of them asked for it (group commit).
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Destination, SpooledMessage } from '../types.js';
import { isGenesis, parseLine, seal, hashLine, type ChainHead } from './chain.js';
import { readEnds } from './read.js';
import { expiredSegments, listSegments, rotatedName, rotatedWithTimes } from './segments.js';

/** The last four: an administrator's change through the admin API (control/queue-admin.ts). */
export type AuditAction = 'copy-intent' | 'copied-to-backup' | 'excluded' | 'withheld' | 'held' | 'released' | 'retried' | 'deleted';

export interface AuditRecord {
  time: string;
  instance: string;
  spoolId: string;
  messageId: string | null;
  sha256: string;
  from: string;
  to: string[];
  destination: Destination;
  action: AuditAction;
  /** The exclusion rule (excluded), or null. */
  rule: string | null;
  /** Why a copy is made or withheld (the policy's decision), or null. */
  reason: string | null;
  /** The SMTP client that handed the message to the relay (behind a load balancer, as its PROXY header said), or null. */
  client: string | null;
}

export interface AuditOptions {
  /** The active file is rotated once it holds this many bytes. */
  maxFileBytes: number;
  /** Rotated files kept. */
  retainFiles: number;
  /** Rotated files last written longer ago are removed (Infinity: kept by count only). */
  retainForMs: number;
}

export const AUDIT_DEFAULTS: AuditOptions = { maxFileBytes: 64 * 1024 * 1024, retainFiles: 30, retainForMs: Infinity };

interface Pending {
  fields: AuditRecord;
  sync: boolean;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class AuditLog {
  private fh: FileHandle | undefined;
  /** Bytes of whole records in the active file. */
  private bytes = 0;
  private head: ChainHead = { segment: 1, seq: 0, prev: null };
  /** A regular file (rotated, truncated after a failed write); not /dev/full in a test. */
  private regular = true;
  /** The last write failed: the file may hold part of a line past `bytes`. */
  private torn = false;
  private queue: Pending[] = [];
  private scheduled = false;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly instance: string,
    private readonly log: Logger,
    private readonly opts: AuditOptions = AUDIT_DEFAULTS,
  ) {}

  /** Opens the active file and finds where its chain stands (a torn last line, from a crash in the middle of a write, is cut off). */
  async open(): Promise<void> {
    this.fh = await open(this.path, 'a+', 0o600);
    const st = await this.fh.stat();
    this.regular = st.isFile();
    this.bytes = this.regular ? st.size : 0;
    if (!this.regular || st.size === 0) return this.startSegment();
    const ends = await readEnds(this.fh, st.size);
    const first = ends.first === null ? null : parseLine(ends.first);
    if (!first?.ok || !isGenesis(first.record) || ends.last === null) {
      // A file written before the log was chained: kept aside, verified by nobody.
      const aside = `${this.path}.unchained-${Date.now()}`;
      await this.fh.close();
      await rename(this.path, aside);
      this.log.warn({ file: aside }, 'audit log without a hash chain moved aside; a new chained file starts');
      this.fh = await open(this.path, 'a+', 0o600);
      this.bytes = 0;
      return this.startSegment();
    }
    if (ends.end < st.size) {
      this.log.warn({ file: this.path, bytes: st.size - ends.end }, 'audit log ended in an incomplete line (a write cut short by a crash): cut off');
      await this.fh.truncate(ends.end);
      this.bytes = ends.end;
    }
    const last = parseLine(ends.last);
    if (!last.ok) throw new Error(`audit log ${this.path}: its last line is not a chained record (${last.reason}); run "mail-continuity audit verify" and move the file aside`);
    this.head = { segment: first.record.segment as number, seq: (last.record.seq as number) + 1, prev: hashLine(ends.last) };
  }

  /** The chain of a new active file: the segment after the newest rotated one, linked to its last line. */
  private async startSegment(): Promise<void> {
    const rotated = this.regular ? (await listSegments(this.path)).filter((s) => s.number !== null) : [];
    const newest = rotated.at(-1);
    let prev: string | null = null;
    if (newest) {
      const fh = await open(newest.path, 'r');
      try {
        const ends = await readEnds(fh, (await fh.stat()).size);
        prev = ends.last === null ? null : hashLine(ends.last);
      } finally {
        await fh.close();
      }
    }
    this.head = { segment: (newest?.number ?? 0) + 1, seq: 0, prev };
  }

  /** Appends a record; errors are logged, not thrown (delivery goes on). */
  record(message: SpooledMessage, recipients: string[], action: AuditAction, rule?: string, destination: Destination = 'backup', reason?: string): Promise<void> {
    const rec = this.fields(message, recipients, action, rule, destination, reason);
    return this.append(rec, false).catch((e: unknown) => {
      this.log.error({ err: (e as Error).message, audit: rec }, 'audit log write failed');
    });
  }

  /** The intent to copy to the backup (with the policy's reason), on stable storage; rejects when it cannot be written. */
  intent(message: SpooledMessage, recipients: string[], reason?: string): Promise<void> {
    return this.append(this.fields(message, recipients, 'copy-intent', undefined, 'backup', reason), true);
  }

  private fields(message: SpooledMessage, recipients: string[], action: AuditAction, rule: string | undefined, destination: Destination, reason: string | undefined): AuditRecord {
    return {
      time: new Date().toISOString(),
      instance: this.instance,
      spoolId: message.id,
      messageId: message.messageId ?? null,
      sha256: message.sha256,
      from: message.mailFrom,
      to: recipients,
      destination,
      action,
      rule: rule ?? null,
      reason: reason ?? null,
      client: message.clientAddress ?? null,
    };
  }

  private append(fields: AuditRecord, sync: boolean): Promise<void> {
    const done = new Promise<void>((resolve, reject) => this.queue.push({ fields, sync, resolve, reject }));
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.chain = this.chain.then(() => this.writeBatch());
      });
    }
    return done;
  }

  private async writeBatch(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    try {
      if (!this.fh) {
        // A rotation that renamed the file but could not open the next one: open it now.
        this.fh = await open(this.path, 'a+', 0o600);
        this.bytes = (await this.fh.stat()).size;
      }
      if (this.torn && this.regular) {
        // What a failed write left past the last whole record goes before anything else is written.
        await this.fh.truncate(this.bytes);
        this.torn = false;
      }
      if (this.regular && this.head.seq > 0 && this.bytes >= this.opts.maxFileBytes) await this.rotate();
      let head = this.head;
      let text = '';
      for (const p of batch) {
        const s = seal(head, p.fields as unknown as Record<string, unknown>, { time: p.fields.time, instance: this.instance });
        text += s.text;
        head = s.head;
      }
      const bytes = Buffer.from(text, 'utf8');
      try {
        // A full disk first takes part of the batch (a short write), then refuses: all or the error.
        for (let at = 0; at < bytes.length; ) {
          const { bytesWritten } = await this.fh.write(bytes, at, bytes.length - at);
          if (bytesWritten === 0) throw new Error(`audit log ${this.path}: write made no progress`);
          at += bytesWritten;
        }
        if (batch.some((p) => p.sync)) await this.fh.datasync();
      } catch (e) {
        this.torn = true;
        throw e;
      }
      this.head = head;
      this.bytes += bytes.length;
      for (const p of batch) p.resolve();
    } catch (e) {
      for (const p of batch) p.reject(e);
    }
  }

  /** The active file becomes segment N (renamed), a new one starts with a genesis record linked to its last line; then the retention. */
  private async rotate(): Promise<void> {
    await this.fh!.close();
    this.fh = undefined;
    await rename(this.path, rotatedName(this.path, this.head.segment));
    // From here the next line starts the next segment, whether or not the open below succeeds.
    this.head = { segment: this.head.segment + 1, seq: 0, prev: this.head.prev };
    this.bytes = 0;
    this.fh = await open(this.path, 'a+', 0o600);
    this.log.info({ file: rotatedName(this.path, this.head.segment - 1), lastHash: this.head.prev }, 'audit log rotated');
    try {
      for (const path of expiredSegments(await rotatedWithTimes(this.path), { files: this.opts.retainFiles, maxAgeMs: this.opts.retainForMs }, Date.now())) {
        await unlink(path);
        this.log.info({ file: path }, 'audit log file removed by the retention');
      }
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'audit log retention failed');
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
