// The messages the scheduler holds, by id, and how many of them have
// recipients pending at each destination (the queue depth).
import type { MessageState } from '../spool/state.js';
import type { Destination } from '../types.js';
import { DESTINATIONS, Destinations } from './destinations.js';
import type { Entry } from './entry.js';

export class Messages {
  private readonly byId = new Map<string, Entry>();
  /** Messages with recipients pending, per destination. */
  readonly depth: Record<Destination, number> = { primary: 0, backup: 0 };

  get size(): number {
    return this.byId.size;
  }

  get(id: string): Entry | undefined {
    return this.byId.get(id);
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  add(entry: Entry): void {
    this.byId.set(entry.id, entry);
  }

  values(): IterableIterator<Entry> {
    return this.byId.values();
  }

  /** The destinations where `entry` has recipients pending are now `pendingAt`. */
  setPending(entry: Entry, pendingAt: Destinations): void {
    for (const dest of DESTINATIONS) {
      const had = entry.pendingAt.has(dest);
      const has = pendingAt.has(dest);
      if (had !== has) this.depth[dest] += has ? 1 : -1;
    }
    entry.pendingAt = pendingAt;
  }

  /** The message leaves the queue (done, dead or expired); its files are the caller's. */
  close(entry: Entry): void {
    entry.closing = true;
    this.byId.delete(entry.id);
    this.setPending(entry, new Destinations());
  }

  /** The states of the messages in the queue (what the spool journal's compaction writes). */
  *states(): Iterable<MessageState> {
    for (const e of this.byId.values()) yield e.peek();
  }

  /** A copy of the state of one message. */
  copy(id: string): MessageState | undefined {
    const e = this.byId.get(id);
    return e && (JSON.parse(JSON.stringify(e.peek())) as MessageState);
  }

  /** Messages frozen while they wait. */
  get frozenCount(): number {
    let n = 0;
    for (const e of this.byId.values()) if (e.isFrozen) n++;
    return n;
  }
}
