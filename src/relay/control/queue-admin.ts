// The relay's queue on its admin endpoint (bearer token, as /admin/failover):
//
//   GET    /admin/queue[?destination=&recipient=&sender=&state=&minAgeSeconds=]  list (postqueue -p)
//   GET    /admin/queue/ID                 one message's state (postcat -q)
//   POST   /admin/queue/ID/hold            delivered nowhere until released (postsuper -h)
//   POST   /admin/queue/ID/release         (postsuper -H)
//   POST   /admin/queue/ID/retry           every pending destination now (postqueue -i)
//   DELETE /admin/queue/ID                 into dead/ with the reason (postsuper -d)
//   POST   /admin/queue/flush              every waiting retry now (postqueue -f)
//
// A body {"reason": "..."} and the header X-Mail-Continuity-Actor (who asked,
// as the caller says: the token is the relay's one admin token) go into the
// audit record every change writes (held, released, retried, deleted). The
// filters are pure (queueFilter); the operations are the scheduler's (queue-ops.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuditAction, AuditLog } from '../audit/log.js';
import type { QueueOps, OpResult } from '../scheduler/queue-ops.js';
import type { MessageState } from '../spool/state.js';
import type { Destination } from '../types.js';

export const ADMIN_QUEUE_PATH = '/admin/queue';
/** The admin token as a client behind the apiserver's pod proxy sends it (lower case, as Node reads headers). */
export const RELAY_TOKEN_HEADER = 'x-mail-continuity-token';

export interface QueueFilter {
  destination?: Destination;
  recipient?: string;
  sender?: string;
  /** held: on hold; deferred: an attempt failed and a retry waits; active: neither. */
  state?: 'held' | 'deferred' | 'active';
  minAgeSeconds?: number;
}

export type Send = (res: ServerResponse, status: number, body: unknown) => void;

/** The filter of a list request, or the error that names the bad parameter. */
export function queueFilter(params: URLSearchParams): QueueFilter | { error: string } {
  const f: QueueFilter = {};
  for (const [k, v] of params) {
    if (k === 'destination') {
      if (v !== 'primary' && v !== 'backup') return { error: `destination=${v}: use primary or backup` };
      f.destination = v;
    } else if (k === 'recipient') f.recipient = v.toLowerCase();
    else if (k === 'sender') f.sender = v.toLowerCase();
    else if (k === 'state') {
      if (v !== 'held' && v !== 'deferred' && v !== 'active') return { error: `state=${v}: use held, deferred or active` };
      f.state = v;
    } else if (k === 'minAgeSeconds') {
      if (!/^\d+$/.test(v)) return { error: `minAgeSeconds=${v}: a whole number of seconds` };
      f.minAgeSeconds = Number(v);
    } else return { error: `unknown parameter ${k}: use destination, recipient, sender, state or minAgeSeconds` };
  }
  return f;
}

const pendingAt = (st: MessageState, dest: Destination) =>
  Object.entries(st.deliveries[dest]?.recipients ?? {}).filter(([, r]) => r.status === 'pending').map(([a]) => a);

/** One line of the list: what `queue list` shows. */
export function queueItem(st: MessageState, now: number) {
  const dests = (['primary', 'backup'] as const).flatMap((dest) => {
    const ds = st.deliveries[dest];
    if (!ds) return [];
    return [[dest, { pending: pendingAt(st, dest), attempts: ds.attempts, nextAttemptAt: new Date(ds.nextAttemptAt).toISOString(), ...(ds.lastError ? { lastError: ds.lastError } : {}) }] as const];
  });
  const hold = st.deliveries.primary?.hold;
  return {
    id: st.id,
    messageId: st.messageId ?? null,
    from: st.mailFrom,
    to: st.rcptTo,
    size: st.size,
    receivedAt: new Date(st.receivedAt).toISOString(),
    ageSeconds: Math.max(0, Math.floor((now - st.receivedAt) / 1000)),
    state: hold ? 'held' : dests.some(([, d]) => d.attempts > 0 && d.pending.length > 0) ? 'deferred' : 'active',
    ...(hold ? { hold: { at: new Date(hold.at).toISOString(), ...(hold.reason ? { reason: hold.reason } : {}) } } : {}),
    destinations: Object.fromEntries(dests),
  };
}

export function matches(item: ReturnType<typeof queueItem>, f: QueueFilter): boolean {
  const dests = Object.entries(item.destinations);
  if (f.destination && !(item.destinations[f.destination]?.pending.length)) return false;
  if (f.recipient && !dests.some(([, d]) => d.pending.some((r) => r.toLowerCase() === f.recipient))) return false;
  if (f.sender && item.from.toLowerCase() !== f.sender) return false;
  if (f.state && item.state !== f.state) return false;
  if (f.minAgeSeconds !== undefined && item.ageSeconds < f.minAgeSeconds) return false;
  return true;
}

export interface QueueAdminDeps {
  ops: QueueOps;
  audit: Pick<AuditLog, 'record'>;
  now?: () => number;
}

/** Handles /admin/queue...; the caller checked the bearer token. */
export async function handleQueue(req: IncomingMessage, res: ServerResponse, url: URL, deps: QueueAdminDeps, send: Send, body: () => Promise<string>): Promise<void> {
  const now = (deps.now ?? Date.now)();
  const rest = url.pathname.slice(ADMIN_QUEUE_PATH.length).split('/').filter(Boolean);
  if (rest.length === 0) {
    if (req.method !== 'GET') return send(res, 405, { error: 'use GET (list) or POST /admin/queue/flush' });
    const f = queueFilter(url.searchParams);
    if ('error' in f) return send(res, 400, { error: f.error });
    const items = deps.ops.list().map((st) => queueItem(st, now)).filter((i) => matches(i, f));
    return send(res, 200, { items });
  }
  const reasonOf = async (): Promise<string | undefined> => {
    const text = await body();
    if (text.trim() === '') return undefined;
    const parsed = JSON.parse(text) as { reason?: unknown };
    return typeof parsed.reason === 'string' ? parsed.reason.slice(0, 500) : undefined;
  };
  const actor = String(req.headers['x-mail-continuity-actor'] ?? 'unknown').slice(0, 200);
  if (rest.length === 1 && rest[0] === 'flush') {
    if (req.method !== 'POST') return send(res, 405, { error: 'use POST' });
    return send(res, 200, { flushed: deps.ops.flush() });
  }
  const [id, action, ...extra] = rest;
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(id!) || extra.length > 0) return send(res, 404, { error: 'not found' });
  let reason: string | undefined;
  try {
    reason = req.method === 'GET' ? undefined : await reasonOf();
  } catch (e) {
    return send(res, 400, { error: `body must be JSON {"reason": "..."}: ${(e as Error).message}` });
  }
  let r: OpResult;
  let audit: AuditAction;
  if (action === undefined && req.method === 'GET') {
    const st = deps.ops.show(id!);
    return st ? send(res, 200, { ...queueItem(st, now), spoolState: st }) : notFound(res, send, id!);
  } else if (action === undefined && req.method === 'DELETE') {
    [r, audit] = [await deps.ops.remove(id!, `deleted by ${actor} through the admin API${reason ? `: ${reason}` : ''}`), 'deleted'];
  } else if (req.method !== 'POST' || action === undefined) {
    return send(res, 405, { error: 'use GET or DELETE on a message, POST on its hold, release or retry' });
  } else if (action === 'hold') [r, audit] = [deps.ops.hold(id!, reason), 'held'];
  else if (action === 'release') [r, audit] = [deps.ops.release(id!), 'released'];
  else if (action === 'retry') [r, audit] = [deps.ops.retry(id!), 'retried'];
  else return send(res, 404, { error: `unknown action ${action}: use hold, release or retry` });
  if (!r.ok) return r.error === 'busy' ? send(res, 409, { error: r.message }) : notFound(res, send, id!);
  if (r.changed) {
    const to = [...new Set([...Object.keys(r.state.deliveries.primary?.recipients ?? {}), ...Object.keys(r.state.deliveries.backup?.recipients ?? {})])];
    await deps.audit.record(r.message, to.length > 0 ? to : r.state.rcptTo, audit, undefined, 'primary', `admin ${actor}${reason ? `: ${reason}` : ''}`);
  }
  return send(res, 200, { changed: r.changed, ...queueItem(r.state, now) });
}

function notFound(res: ServerResponse, send: Send, id: string): void {
  send(res, 404, { error: `no message ${id} in this relay's queue (delivered, deleted, or on another relay)` });
}
