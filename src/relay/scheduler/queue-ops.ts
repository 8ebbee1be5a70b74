// What an administrator may do to the queue (Postfix's postqueue -p/-f/-i and
// postsuper -h/-H/-d), on the scheduler's own messages so the running relay
// acts at once: list and show, hold (delivered nowhere, neither to the primary
// nor to the backup, until released; the hold is in the message's journaled
// state, so it survives a restart), release, retry one now, flush all now, and
// delete (moved to dead/ with the reason, as evidence; a message being
// delivered right now is refused: try again). Auditing is the caller's
// (control/queue-admin.ts), which knows who asked.
import type { MessageState } from '../spool/state.js';
import type { Spool } from '../spool/spool.js';
import type { SpooledMessage } from '../types.js';
import { Tracked } from '../../lib/tracked.js';
import { DESTINATIONS } from './destinations.js';
import type { Entry } from './entry.js';
import type { Messages } from './messages.js';
import type { DeliveryQueues } from './queues.js';

export const isHeld = (st: MessageState): boolean => st.deliveries.primary?.hold !== undefined;

export interface QueueOpsDeps {
  entries: Messages;
  queues: DeliveryQueues;
  spool: Pick<Spool, 'saveState' | 'moveToDead' | 'toMessage'>;
  running: Tracked;
  now: () => number;
  /** Decide again and put in line (the scheduler's evaluate). */
  evaluate: (entry: Entry) => void;
  pump: () => void;
  gauges: () => void;
}

/** The outcome of an operation on one message: its state after it and the message (for the audit). */
export type OpResult =
  | { ok: true; state: MessageState; message: SpooledMessage; changed: boolean }
  | { ok: false; error: 'not-found' | 'busy'; message?: string };

export class QueueOps {
  constructor(private readonly d: QueueOpsDeps) {}

  /** Copies of every message's state, oldest first. */
  list(): MessageState[] {
    return [...this.d.entries.values()]
      .map((e) => this.d.entries.copy(e.id)!)
      .sort((a, b) => a.receivedAt - b.receivedAt || a.id.localeCompare(b.id));
  }

  show(id: string): MessageState | undefined {
    return this.d.entries.copy(id);
  }

  hold(id: string, reason: string | undefined): OpResult {
    return this.change(id, (st) => {
      if (isHeld(st)) return false;
      st.deliveries.primary!.hold = { at: this.d.now(), ...(reason ? { reason } : {}) };
      return true;
    });
  }

  release(id: string): OpResult {
    return this.change(id, (st) => {
      if (!isHeld(st)) return false;
      delete st.deliveries.primary!.hold;
      return true;
    });
  }

  /** Every destination still pending is due now (a held message stays held). */
  retry(id: string): OpResult {
    const r = this.change(id, (st) => {
      const now = this.d.now();
      let changed = false;
      for (const dest of DESTINATIONS) {
        const ds = st.deliveries[dest];
        if (ds && ds.nextAttemptAt > now) {
          ds.nextAttemptAt = now;
          changed = true;
        }
      }
      return changed;
    });
    if (r.ok) this.d.queues.retryMessage(id);
    this.d.pump();
    return r;
  }

  /** Every message waiting for a retry is due now, at both destinations; returns how many waited. */
  flush(): number {
    let n = 0;
    for (const dest of DESTINATIONS) n += this.d.queues.retryNow(dest);
    this.d.pump();
    return n;
  }

  /** Out of the queue into dead/ with `reason`; refused while a delivery of it is in flight. */
  async remove(id: string, reason: string): Promise<OpResult> {
    const entry = this.d.entries.get(id);
    if (!entry || entry.closing) return { ok: false, error: 'not-found' };
    if (entry.busy.size > 0) {
      return { ok: false, error: 'busy', message: `a delivery of ${id} to the ${[...entry.busy].join(' and ')} is in flight: hold it, then delete it` };
    }
    const state = entry.state;
    const message = entry.message;
    this.d.entries.close(entry);
    this.d.gauges();
    const moved = this.d.spool.moveToDead(state, reason, this.d.now(), message);
    this.d.running.add(moved);
    await moved;
    return { ok: true, state, message, changed: true };
  }

  private change(id: string, apply: (st: MessageState) => boolean): OpResult {
    const entry = this.d.entries.get(id);
    if (!entry || entry.closing) return { ok: false, error: 'not-found' };
    const st = entry.state;
    const changed = apply(st);
    if (changed) {
      this.d.running.add(this.d.spool.saveState(st).catch(() => undefined));
      this.d.evaluate(entry);
    }
    return { ok: true, state: this.d.entries.copy(id) ?? st, message: this.d.spool.toMessage(st), changed };
  }
}
