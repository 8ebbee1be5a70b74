// The relay's drain, set by the operator before a scale-down removes this
// replica (PUT /admin/failover {"draining": true}; the contract is in
// src/api/relay/admin.ts). A draining relay takes no new mail — /readyz
// answers 503 so the Service stops sending it connections, and MAIL on a
// connection already open gets 421 4.3.2 (access.ts) — and goes on
// delivering what its spool holds, to the primary and the backup as the
// policy says. The operator lowers the StatefulSet only once it reports
// nothing queued and no SMTP session open. The drain lives in memory: a
// relay that restarts is told again at the operator's next sync.
import type { Logger } from 'pino';

export interface DrainDeps {
  /** Messages still waiting for the primary or the backup. */
  queued(): number;
  /** Connected SMTP clients. */
  sessions(): number;
  log: Logger;
}

/** The intake's view of the queue (InboundDeps.queue): what the inbound side needs of the scheduler. */
export interface IntakeQueue<S, O> {
  backlog(): number;
  add(state: S, opts: O): void;
}

export class Drain {
  private on = false;

  constructor(private readonly d: DrainDeps) {}

  get draining(): boolean {
    return this.on;
  }

  set(draining: boolean): void {
    if (draining === this.on) return;
    this.on = draining;
    const facts = { queued: this.d.queued(), smtpSessions: this.d.sessions() };
    if (draining) this.d.log.info(facts, 'draining before removal: taking no new mail, delivering what the spool holds');
    else this.d.log.info(facts, 'drain cancelled: taking mail again');
  }

  /** Its part of the admin snapshot. */
  snapshot(): { draining: boolean; smtpSessions: number } {
    return { draining: this.on, smtpSessions: this.d.sessions() };
  }

  /** The /readyz answer's reason while draining (undefined: not draining). */
  notReadyReason(): string | undefined {
    return this.on ? `draining: ${this.d.queued()} messages still queued` : undefined;
  }

  /**
   * The queue as the SMTP intake sees it: while draining, an infinite backlog,
   * which access.ts answers with 421 4.3.2 at MAIL (the only hook the intake
   * offers without a change to its wiring).
   */
  intake<S, O>(queue: IntakeQueue<S, O>): IntakeQueue<S, O> {
    return {
      backlog: () => (this.on ? Number.POSITIVE_INFINITY : queue.backlog()),
      add: (state, opts) => queue.add(state, opts),
    };
  }
}
