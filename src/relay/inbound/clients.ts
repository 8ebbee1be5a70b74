// Connected SMTP clients (Postfix's anvil): how many per client group, decided
// when a connection is opened, not when its greeting is due. Each connection
// is admitted or refused once, at open, against the connections already
// admitted from its group: a burst just over the limit refuses only the excess
// (counted at open and checked after the greeting pause, every connection of a
// burst saw the whole burst and all were refused).
//
// A group is one IPv4 address, or an IPv6 network of tuning.ipv6GroupPrefix bits
// (default /64: one host's privacy addresses are one client). When a group is
// full, its connection idle longest is given up for the newcomer once it has
// been idle tuning.stressIdleMs: an idle flood from an MX provider's address
// cannot lock its real mail out.
import { parseIp } from '../../lib/ip.js';

/** A connected client, told when it goes away (smtp-server leaves an open DATA stream hanging). */
export interface ClientConn {
  id: string;
  group: string;
  /** Counted against its group's limit (false: refused at open, the excess of a burst). */
  admitted: boolean;
  openedAt: number;
  /** Last byte from the client or reply to it. */
  lastActivity: number;
  /** The relay, not the client, is working (a MAIL held by backpressure, a commit): never idle. */
  busy: number;
  left: boolean;
  onLeave?: () => void;
}

/** The decision for a new connection. */
export type Admission = { admitted: true; evict?: ClientConn } | { admitted: false };

/** The group a client address counts in: the address itself (IPv4), its /prefix network (IPv6). */
export function clientGroup(address: string, ipv6Prefix: number): string {
  const ip = parseIp(address);
  if (!ip) return address;
  if (ip.family === 4) return ip.bytes.join('.');
  const bytes = Uint8Array.from(ip.bytes);
  for (let bit = ipv6Prefix; bit < 128; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  const hex = Buffer.from(bytes).toString('hex');
  return `${hex.match(/.{4}/g)!.join(':')}/${ipv6Prefix}`;
}

export interface ClientLimits {
  perGroup: number;
  ipv6Prefix: number;
  /** A full group's idlest connection is given up for a new one once idle this long. */
  evictIdleMs: number;
}

/** Connected clients by connection id, and the admitted ones per group. */
export class Clients {
  private readonly groups = new Map<string, Set<ClientConn>>();
  /** Plain objects, not AbortControllers: one per connection, and aborting one builds a DOMException with a stack trace. */
  private readonly conns = new Map<string, ClientConn>();

  constructor(private readonly limits: ClientLimits) {}

  /** A new connection: admitted (perhaps in place of an idle one, which the caller drops) or refused. */
  opened(id: string, address: string, now = Date.now()): Admission {
    const group = clientGroup(address, this.limits.ipv6Prefix);
    const conn: ClientConn = { id, group, admitted: false, openedAt: now, lastActivity: now, busy: 0, left: false };
    this.conns.set(id, conn);
    let members = this.groups.get(group);
    if (!members) this.groups.set(group, (members = new Set()));
    let evict: ClientConn | undefined;
    if (members.size >= this.limits.perGroup) {
      evict = idlest(members, now, this.limits.evictIdleMs);
      if (!evict) return { admitted: false };
      evict.admitted = false;
      members.delete(evict);
    }
    conn.admitted = true;
    members.add(conn);
    return evict ? { admitted: true, evict } : { admitted: true };
  }

  closed(id: string): void {
    const conn = this.conns.get(id);
    if (!conn) return;
    conn.left = true;
    conn.onLeave?.();
    this.conns.delete(id);
    const members = this.groups.get(conn.group);
    members?.delete(conn);
    if (members?.size === 0) this.groups.delete(conn.group);
  }

  /** Admitted connections in the group of `address`. */
  from(address: string): number {
    return this.groups.get(clientGroup(address, this.limits.ipv6Prefix))?.size ?? 0;
  }

  conn(id: string): ClientConn | undefined {
    return this.conns.get(id);
  }

  all(): IterableIterator<ClientConn> {
    return this.conns.values();
  }

  active(id: string, now = Date.now()): void {
    const c = this.conns.get(id);
    if (c) c.lastActivity = now;
  }

  /** Runs `work` with the connection marked busy (not idle, whatever the client does meanwhile). */
  async whileBusy<T>(id: string, work: () => Promise<T>): Promise<T> {
    const c = this.conns.get(id);
    if (c) c.busy++;
    try {
      return await work();
    } finally {
      if (c) {
        c.busy--;
        c.lastActivity = Date.now();
      }
    }
  }
}

function idlest(members: Set<ClientConn>, now: number, minIdleMs: number): ClientConn | undefined {
  let best: ClientConn | undefined;
  for (const c of members) if (c.busy === 0 && now - c.lastActivity >= minIdleMs && (!best || c.lastActivity < best.lastActivity)) best = c;
  return best;
}
