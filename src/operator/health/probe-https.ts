// The optional HTTP(S) probe of the primary: GET a health page such as
// /owa/healthcheck.htm and compare the status. Bounded by timeoutMs.
import type { ClientRequest, IncomingMessage } from 'node:http';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { untrustedCaHint, trustedCa } from '../../lib/tls-trust.js';
import { classify, elapsed, hostPort, ProbeFailure, quoteSeen, type ProbeResult } from './probe-result.js';

export interface HttpsProbeOptions {
  url: string;
  expectedStatus?: number;
  insecureSkipTLSVerify?: boolean;
  /** PEM CA certificates trusted in addition to the system roots (spec.primary.caBundle / caSecretRef). */
  ca?: string;
  timeoutMs: number;
}

/** GETs url and compares the status with expectedStatus (default 200). */
export async function probeHttps(o: HttpsProbeOptions): Promise<ProbeResult> {
  const start = process.hrtime.bigint();
  const expected = o.expectedStatus ?? 200;
  let url: URL;
  try {
    url = new URL(o.url);
  } catch {
    return { ok: false, latencyMs: 0, reason: 'DNSError', message: `${quoteSeen(o.url)} is not a URL`, probe: 'https' };
  }
  const isHttps = url.protocol === 'https:';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const target = hostPort(host, Number(url.port || (isHttps ? 443 : 80)));
  let req: ClientRequest | undefined;
  let res: IncomingMessage | undefined;
  let timer: NodeJS.Timeout | undefined;
  let connected = false;
  const fail = (f: ProbeFailure): ProbeResult => ({
    ok: false,
    latencyMs: elapsed(start),
    reason: f.reason,
    message: f.message,
    probe: 'https',
  });
  try {
    const status = await new Promise<number>((resolve, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new ProbeFailure(
              'Timeout',
              `GET ${url.href} got no answer within ${o.timeoutMs} ms${connected ? '' : ` (no connection to ${target})`}`,
            ),
          ),
        o.timeoutMs,
      );
      const options = {
        method: 'GET',
        agent: false as const,
        headers: { 'user-agent': 'mail-continuity-operator health probe', connection: 'close' },
        ...(isHttps ? { rejectUnauthorized: !o.insecureSkipTLSVerify, ...(o.ca ? { ca: trustedCa(o.ca) } : {}) } : {}),
      };
      req = (isHttps ? httpsRequest : httpRequest)(url, options, (r) => {
        res = r;
        resolve(r.statusCode ?? 0);
      });
      req.on('socket', (s) => s.once('connect', () => (connected = true)));
      req.on('error', (err) => {
        const f = classify(err, target, host, false, o.timeoutMs);
        reject(new ProbeFailure(f.reason, f.message + untrustedCaHint(err, !!o.ca)));
      });
      req.end();
    });
    if (status !== expected) {
      const f = new ProbeFailure('HTTPStatus', `GET ${url.href} answered ${status} (expected ${expected})`);
      return { ok: false, latencyMs: elapsed(start), reason: f.reason, message: f.message, probe: 'https', status };
    }
    return { ok: true, latencyMs: elapsed(start) };
  } catch (err) {
    return fail(classify(err, target, host, false, o.timeoutMs));
  } finally {
    clearTimeout(timer);
    const r = res as IncomingMessage | undefined;
    r?.on('error', () => undefined);
    r?.destroy();
    const q = req as ClientRequest | undefined;
    q?.on('error', () => undefined);
    q?.destroy();
  }
}
