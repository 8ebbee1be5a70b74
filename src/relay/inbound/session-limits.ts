// Time limits of SMTP sessions, adapted to stress like Postfix's
// smtpd_timeout = ${stress?10}s:300s: a total time per session, and, while the
// relay nears its connection limit or its budget for message bytes in memory,
// idle clients are cut after tuning.stressIdleMs instead of the normal idle
// timeout (smtp-server's own, tuning.socketTimeoutMs). Pure decisions here; the
// sweep that applies them once a second is in server.ts.
import type { ClientConn } from './clients.js';

export interface SessionLimitOptions {
  maxSessionMs: number;
  stressIdleMs: number;
  /** Share of maxClients from which the relay is under stress. */
  stressClientsRatio: number;
  maxClients: number;
}

export interface Load {
  clients: number;
  /** Message bytes held in memory are at their budget. */
  memoryFull: boolean;
}

export function underStress(load: Load, o: SessionLimitOptions): boolean {
  return load.memoryFull || load.clients >= Math.ceil(o.maxClients * o.stressClientsRatio);
}

export type Cut = { reason: 'session-time'; reply: string } | { reason: 'idle-under-stress'; reply: string };

/** Whether a connection is to be cut now, and the 421 text it gets. */
export function cutFor(c: ClientConn, now: number, stress: boolean, o: SessionLimitOptions): Cut | undefined {
  if (now - c.openedAt >= o.maxSessionMs) return { reason: 'session-time', reply: '4.4.2 Session time limit exceeded, closing connection' };
  if (stress && c.busy === 0 && now - c.lastActivity >= o.stressIdleMs) return { reason: 'idle-under-stress', reply: '4.4.2 Idle timeout (the relay is busy), closing connection' };
  return undefined;
}
