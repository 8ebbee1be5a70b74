import type { MessageFacts } from '../policy/policy.js';
import type { Spool } from '../spool/spool.js';
import type { MessageState } from '../spool/state.js';
import type { SpooledMessage } from '../types.js';
import { Destinations } from './destinations.js';

/**
 * One message in the queue. While it is being worked on its state is parsed
 * (`state`, `message`, `facts`); while it only waits (a retry later, a
 * destination that is down) it is frozen to its JSON text, which takes a
 * fraction of the memory of the objects: a backlog of 50,000 messages while
 * Exchange is down must fit in a small pod. Reading `state` thaws it.
 */
export class Entry {
  readonly id: string;
  readonly receivedAt: number;
  readonly busy = new Destinations();
  /** Destinations whose ready queue or timer heap holds this entry. */
  readonly queued = new Destinations();
  /** Destinations with pending recipients (for the queue depth gauge). */
  pendingAt = new Destinations();
  closing = false;
  /** Recovery after a restart is checking the destinations: not frozen meanwhile. */
  recovering = false;
  /** FailoverOnly: some recipient has no backup decision yet (the sweep looks again). */
  undecided = false;
  /** Taken by this relay process (not read from the spool at start): its backup decisions were made under the rules it runs. */
  fromIntake = false;
  /** Recipients whose withheld copy is already audited (once per relay run, not per sweep). */
  readonly withheldAudited = new Set<string>();
  private live: { state: MessageState; message: SpooledMessage; facts: MessageFacts } | undefined;
  private frozen: string | undefined;

  constructor(
    state: MessageState,
    message: SpooledMessage,
    private readonly spool: Pick<Spool, 'toMessage' | 'releaseBody'>,
  ) {
    this.id = state.id;
    this.receivedAt = state.receivedAt;
    this.live = Entry.open(state, message);
  }

  private static open(state: MessageState, message: SpooledMessage): NonNullable<Entry['live']> {
    return { state, message, facts: { mailFrom: state.mailFrom, headers: state.headers ?? [], receivedAt: state.receivedAt } };
  }

  private thaw(): NonNullable<Entry['live']> {
    if (!this.live) {
      const state = JSON.parse(this.frozen!) as MessageState;
      this.frozen = undefined;
      this.live = Entry.open(state, this.spool.toMessage(state));
    }
    return this.live;
  }

  get state(): MessageState {
    return this.thaw().state;
  }
  get message(): SpooledMessage {
    return this.thaw().message;
  }
  get facts(): MessageFacts {
    return this.thaw().facts;
  }
  get isFrozen(): boolean {
    return this.live === undefined;
  }

  /** The state without thawing (a parsed copy when frozen). */
  peek(): MessageState {
    return this.live ? this.live.state : (JSON.parse(this.frozen!) as MessageState);
  }

  /** Only an entry nobody is working on; its cached body is dropped too. */
  freeze(): void {
    if (!this.live || this.busy.size > 0 || this.recovering || this.closing) return;
    this.spool.releaseBody(this.live.message);
    this.frozen = JSON.stringify(this.live.state);
    this.live = undefined;
  }
}
