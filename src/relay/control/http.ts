// The relay's HTTP side (separate from SMTP): /metrics, /healthz, /readyz and
// the operator's admin endpoint PUT /admin/failover (bearer token), which also
// carries the drain before a scale-down (drain.ts).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ADMIN_FAILOVER_PATH, FailoverUpdate, type BackupCheckReport } from '../../api/relay/admin.js';
import type { Drain } from './drain.js';
import { ADMIN_QUEUE_PATH, handleQueue, RELAY_TOKEN_HEADER, type QueueAdminDeps } from './queue-admin.js';
import { bearerMatches, failoverSnapshot, type DeliveryFacts, type FailoverState } from './failover-state.js';

export interface HttpDeps {
  registry: Registry;
  failover: FailoverState;
  /** The scheduler's own numbers for the snapshot. */
  facts: () => DeliveryFacts;
  /** Draining before a scale-down (its part of the snapshot, set by the same PUT). */
  drain: Pick<Drain, 'set' | 'snapshot'>;
  /** The queue on /admin/queue (queue-admin.ts); absent: 404. */
  queue?: QueueAdminDeps;
  /** The last token grant of the backup check (backup-check.ts), for the snapshot. */
  backupCheck?: () => BackupCheckReport | undefined;
  /** The backup transport's share of each Gmail mailbox's quota (GmailApi), set by the same PUT. */
  mailboxQuota?: { get(): number; set(unitsPerMinute: number): void };
  /** The admin bearer token, or how to get the current one (it is re-read when its Secret changes); undefined disables /admin (always 401). */
  adminToken: string | undefined | (() => string | undefined);
  ready: () => { ready: boolean; reason?: string };
  log: Logger;
}

function send(res: ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(text);
}

async function readBody(req: IncomingMessage, limit = 4096): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > limit) throw new Error('body too large');
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function startHttp(host: string, port: number, deps: HttpDeps): Promise<Server> {
  const server = createServer((req, res) => {
    void handle(req, res).catch((e: unknown) => {
      deps.log.error({ err: (e as Error).message, url: req.url }, 'http handler failed');
      if (!res.headersSent) send(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });
  const adminToken = () => (typeof deps.adminToken === 'function' ? deps.adminToken() : deps.adminToken);
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://relay');
    if (deps.queue && (url.pathname === ADMIN_QUEUE_PATH || url.pathname.startsWith(`${ADMIN_QUEUE_PATH}/`))) {
      // Through the apiserver's pod proxy the Authorization header is the apiserver's: the token may come as X-Mail-Continuity-Token.
      const viaProxy = req.headers[RELAY_TOKEN_HEADER];
      if (!bearerMatches(req.headers.authorization, adminToken()) && !(typeof viaProxy === 'string' && bearerMatches(`Bearer ${viaProxy}`, adminToken()))) {
        res.setHeader('www-authenticate', 'Bearer');
        return send(res, 401, { error: 'unauthorized' });
      }
      return handleQueue(req, res, url, deps.queue, send, () => readBody(req));
    }
    switch (url.pathname) {
      case '/metrics':
        return send(res, 200, await deps.registry.metrics(), deps.registry.contentType);
      case '/healthz':
        return send(res, 200, 'ok\n', 'text/plain');
      case '/readyz': {
        const r = deps.ready();
        return send(res, r.ready ? 200 : 503, r.ready ? 'ok\n' : `not ready: ${r.reason ?? 'unknown'}\n`, 'text/plain');
      }
      case ADMIN_FAILOVER_PATH: {
        if (!bearerMatches(req.headers.authorization, adminToken())) {
          res.setHeader('www-authenticate', 'Bearer');
          return send(res, 401, { error: 'unauthorized' });
        }
        const quota = deps.mailboxQuota;
        const snapshot = () => ({
          ...failoverSnapshot(deps.failover, deps.facts),
          ...deps.drain.snapshot(),
          ...(quota ? { gmailUnitsPerMinute: quota.get() } : {}),
          ...withBackupCheck(deps.backupCheck?.()),
        });
        if (req.method === 'GET') return send(res, 200, snapshot());
        if (req.method !== 'PUT') return send(res, 405, { error: 'use GET or PUT' });
        let parsed: FailoverUpdate;
        try {
          const r = FailoverUpdate.safeParse(JSON.parse(await readBody(req)));
          if (!r.success) return send(res, 400, { error: r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ') });
          parsed = r.data;
        } catch (e) {
          return send(res, 400, { error: `body must be JSON {"active": true|false}: ${(e as Error).message}` });
        }
        deps.failover.set(parsed);
        if (parsed.draining !== undefined) deps.drain.set(parsed.draining);
        if (parsed.gmailUnitsPerMinute !== undefined) quota?.set(parsed.gmailUnitsPerMinute);
        const snap = snapshot();
        deps.log.info({ failover: snap }, 'failover state set through /admin/failover');
        return send(res, 200, snap);
      }
      default:
        return send(res, 404, { error: 'not found' });
    }
  };
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

const withBackupCheck = (r: BackupCheckReport | undefined) => (r ? { backupCheck: r } : {});

export const httpPort = (s: Server): number => (s.address() as AddressInfo).port;
