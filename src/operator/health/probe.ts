// Health probes of the primary (Exchange): an SMTP probe (banner, EHLO,
// STARTTLS handshake when the relay would use it, EHLO again, QUIT) and an
// optional HTTP(S) GET of a health page such as /owa/healthcheck.htm.
//
// A probe never throws: it resolves to a ProbeResult whose failure carries a
// CamelCase reason (for the PrimaryHealthy condition) and a short sentence
// that names host:port and what was seen. Each probe is bounded as a whole by
// timeoutMs and always closes its sockets. latencyMs is the time until the
// verdict (for SMTP: the end of the last EHLO; the QUIT exchange is courtesy
// and does not count). The probes: probe-smtp.ts, probe-https.ts; the verdict
// and the reasons of socket errors: probe-result.ts.
import { probeHttps } from './probe-https.js';
import { probeSmtp } from './probe-smtp.js';
import type { PrimarySpec, ProbeResult } from './probe-result.js';

export { probeHttps, type HttpsProbeOptions } from './probe-https.js';
export { probeSmtp, type SmtpProbeOptions } from './probe-smtp.js';
export { quoteSeen, type PrimarySpec, type ProbeFailureReason, type ProbeResult, type TlsMode } from './probe-result.js';

export interface ProbePrimaryOptions {
  /** Default: spec.health.timeoutSeconds. */
  timeoutMs?: number;
  heloName?: string;
}

/**
 * Runs the enabled probes of spec.primary (SMTP unless health.smtp.enabled is
 * false, HTTPS when health.https is set) side by side, so the whole takes at
 * most timeoutMs. The SMTP failure wins over the HTTPS one. With no probe
 * enabled the primary counts as healthy (latency 0): the spec asked not to
 * probe it, so automatic failover never starts.
 */
export async function probePrimary(primary: PrimarySpec, opts: ProbePrimaryOptions = {}): Promise<ProbeResult> {
  const timeoutMs = opts.timeoutMs ?? primary.health.timeoutSeconds * 1000;
  const probes: Promise<ProbeResult>[] = [];
  if (primary.health.smtp.enabled) {
    probes.push(
      probeSmtp({
        host: primary.host,
        port: primary.port,
        tls: primary.tls,
        insecureSkipTLSVerify: primary.insecureSkipTLSVerify,
        ca: primary.caBundle,
        timeoutMs,
        heloName: opts.heloName,
      }),
    );
  }
  const https = primary.health.https;
  if (https) {
    probes.push(
      probeHttps({
        url: https.url,
        expectedStatus: https.expectedStatus,
        insecureSkipTLSVerify: https.insecureSkipTLSVerify,
        ca: primary.caBundle,
        timeoutMs,
      }),
    );
  }
  const results = await Promise.all(probes);
  const latencyMs = Math.max(0, ...results.map((r) => r.latencyMs));
  const failed = results.find((r) => !r.ok);
  return failed ? { ...failed, latencyMs } : { ok: true, latencyMs };
}
