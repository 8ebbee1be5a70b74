import { readFile, rename, writeFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { AppendFile } from '../../lib/append-file.js';
import type { Destination } from '../types.js';
import type { MessageState } from './state.js';

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
export async function readJournal(path: string): Promise<{ deliveries: Map<string, MessageState['deliveries']>; attempts: Map<string, number> }> {
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
