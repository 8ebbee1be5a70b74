// Who may talk to the relay and what it takes (Postfix's smtpd_*_restrictions):
// the client's network at connect and again at MAIL, connections per client
// address, STARTTLS before MAIL when required, intake backpressure, free spool
// space, the sender's shape, and every recipient against spec.domains.
import type { Logger } from 'pino';
import type { SMTPServerAddress, SMTPServerSession } from 'smtp-server';
import type { RelayConfig } from '../../api/relay/config.js';
import { compileCidrs, matchClient } from '../../lib/ip.js';
import { checkRecipient } from '../policy/policy.js';
import { listHas, type RecipientList } from '../policy/recipients.js';
import type { Spool } from '../spool/spool.js';
import type { Clients } from './clients.js';
import { SmtpError, type Reject } from './smtp-error.js';

export interface AccessDeps {
  config: RelayConfig;
  spool: Pick<Spool, 'hasRoom'>;
  /**
   * Messages ready for delivery but not yet delivered; infinite while the relay
   * drains before its removal (control/drain.ts): MAIL then gets 421 4.3.2.
   */
  backlog(): number;
  clients: Clients;
  /** The recipients that exist (spec.relay.recipients), the current list; undefined: not verified. */
  recipients?: () => RecipientList | undefined;
  /** True once the relay is stopping. */
  closing(): boolean;
  reject: Reject;
  log: Logger;
}

export class Access {
  private readonly cidrs;
  private readonly domains;

  constructor(private readonly d: AccessDeps) {
    this.cidrs = compileCidrs(d.config.spec.relay.acceptFrom);
    this.domains = new Set(d.config.spec.domains.map((x) => x.toLowerCase()));
  }

  /** At connect: the client's network, and whether its connection was admitted when it opened (clients.ts). */
  connect(addr: string, sessionId: string): SmtpError | undefined {
    if (!matchClient(this.cidrs, addr)) {
      this.d.reject('client-denied');
      this.d.log.warn({ client: addr }, 'connection refused: client not in spec.relay.acceptFrom');
      return new SmtpError(554, `5.7.1 Client host [${addr}] not allowed to use this relay`);
    }
    if (this.d.clients.conn(sessionId)?.admitted === false) {
      this.d.reject('too-many-connections');
      return new SmtpError(421, `4.7.0 Too many connections from [${addr}], try again later`);
    }
    return undefined;
  }

  /** At MAIL: TLS, the network again, backpressure, spool space, the sender's shape. Throws the refusal. */
  async mailFrom(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const t = this.d.config.tuning;
    if (this.d.config.spec.relay.requireTLS && !session.secure) {
      this.d.reject('tls-required');
      throw new SmtpError(530, '5.7.0 Must issue a STARTTLS command first');
    }
    if (!matchClient(this.cidrs, session.remoteAddress)) {
      this.d.reject('client-denied');
      throw new SmtpError(550, '5.7.1 Client host not allowed to use this relay');
    }
    if (this.d.backlog() === Number.POSITIVE_INFINITY) {
      this.d.reject('draining');
      throw new SmtpError(421, '4.3.2 This relay is draining before its removal, try again later');
    }
    if (this.d.backlog() > t.maxBacklog && !(await this.d.clients.whileBusy(session.id, () => this.backlogBelowLimit(session.id)))) {
      this.d.reject('backlog');
      throw new SmtpError(451, '4.3.2 System busy: delivery backlog, try again later');
    }
    const declared = Number(argOf(address.args, 'SIZE') ?? 0) || 0;
    if (!(await this.d.spool.hasRoom(declared))) {
      this.d.reject('spool-full');
      throw new SmtpError(452, '4.3.1 Insufficient system storage');
    }
    // eslint-disable-next-line no-control-regex
    if (/[\s<>\x00-\x1f\x7f]/.test(address.address)) {
      this.d.reject('bad-sender');
      throw new SmtpError(553, '5.1.7 Malformed sender address');
    }
  }

  /** At RCPT: the number of recipients, and the domain (no routing tricks). */
  rcptTo(address: SMTPServerAddress, session: SMTPServerSession): SmtpError | undefined {
    if (session.envelope.rcptTo.length >= this.d.config.spec.policy.maxRecipients) {
      this.d.reject('too-many-recipients');
      return new SmtpError(452, '4.5.3 Too many recipients');
    }
    const v = checkRecipient(address.address, this.domains);
    if (!v.ok) {
      this.d.reject('relay-denied');
      this.d.log.info({ client: session.remoteAddress, recipient: address.address.slice(0, 320), reason: v.reason }, 'recipient refused');
      return new SmtpError(550, `5.7.1 <${address.address.slice(0, 320)}>: Relay access denied`);
    }
    const known = this.d.recipients?.();
    if (known && !listHas(known, address.address)) {
      this.d.reject('unknown-recipient');
      this.d.log.info({ client: session.remoteAddress, recipient: address.address.slice(0, 320) }, 'recipient refused: not in spec.relay.recipients');
      return new SmtpError(550, `5.1.1 <${address.address.slice(0, 320)}>: Recipient address rejected: User unknown`);
    }
    return undefined;
  }

  /**
   * Holds a MAIL command while deliveries lag (the sender waits, like a slow
   * server, instead of being sent away for its retry interval); false when
   * tuning.backlogWaitMs passed, the client left or the relay is stopping.
   */
  private async backlogBelowLimit(sessionId: string): Promise<boolean> {
    const t = this.d.config.tuning;
    const deadline = Date.now() + t.backlogWaitMs;
    const conn = this.d.clients.conn(sessionId);
    while (this.d.backlog() > t.maxBacklog) {
      if (Date.now() >= deadline || conn?.left || this.d.closing()) return false;
      await new Promise((r) => setTimeout(r, Math.min(25, Math.max(1, deadline - Date.now()))));
    }
    return true;
  }
}

/** A MAIL or RCPT parameter (`SIZE=`, `SMTPUTF8`) as smtp-server parsed it. */
export function argOf(args: unknown, key: string): unknown {
  return args && typeof args === 'object' ? (args as Record<string, unknown>)[key] : undefined;
}
