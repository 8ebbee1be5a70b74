// Debian's HAProxy as the load balancer in front of the relay: TCP mode, one
// frontend sending the PROXY protocol version 1 to the relay (`send-proxy`),
// one sending version 2 (`send-proxy-v2`), one plain (no header: what a
// balancer without the PROXY protocol does). It connects to the relay from
// `source` (default 127.0.0.1), the address the relay must trust.
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from './controlplane.js';
import { startDaemon, waitForDaemon } from './process.js';

export interface Haproxy {
  /** Frontend whose connections reach the relay with a PROXY v1 header. */
  v1Port: number;
  /** Frontend whose connections reach the relay with a PROXY v2 header. */
  v2Port: number;
  /** Frontend that forwards without a header. */
  plainPort: number;
  stop(): Promise<void>;
}

/** True once something listens on 127.0.0.1:port (read from /proc, without connecting: a connection would reach the relay). */
async function listening(port: number): Promise<boolean> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const table = await readFile('/proc/net/tcp', 'utf8');
  return table.split('\n').some((l) => {
    const f = l.trim().split(/\s+/);
    return f[1] === `0100007F:${hex}` && f[3] === '0A'; // 127.0.0.1, LISTEN
  });
}

export async function startHaproxy(o: { backendPort: number; dir: string; source?: string }): Promise<Haproxy> {
  const [v1Port, v2Port, plainPort] = [await freePort(), await freePort(), await freePort()];
  const source = o.source ?? '127.0.0.1';
  const cfg = join(o.dir, 'haproxy.cfg');
  await writeFile(
    cfg,
    [
      'global',
      '  maxconn 2000',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 120s',
      '  timeout server 120s',
      `frontend smtp_v1`,
      `  bind 127.0.0.1:${v1Port}`,
      '  default_backend relay_v1',
      'backend relay_v1',
      `  server relay 127.0.0.1:${o.backendPort} send-proxy source ${source}`,
      `frontend smtp_v2`,
      `  bind 127.0.0.1:${v2Port}`,
      '  default_backend relay_v2',
      'backend relay_v2',
      `  server relay 127.0.0.1:${o.backendPort} send-proxy-v2 source ${source}`,
      `frontend smtp_plain`,
      `  bind 127.0.0.1:${plainPort}`,
      '  default_backend relay_plain',
      'backend relay_plain',
      `  server relay 127.0.0.1:${o.backendPort} source ${source}`,
      '',
    ].join('\n'),
  );
  try {
    execFileSync('haproxy', ['-c', '-q', '-f', cfg], { stdio: 'pipe' });
  } catch (e) {
    const err = e as { message: string; stderr?: Buffer };
    throw new Error(`haproxy -c ${cfg} failed (make install installs Debian's haproxy): ${err.stderr?.toString() || err.message}`);
  }
  const daemon = startDaemon('haproxy', 'haproxy', ['-db', '-f', cfg], o.dir);
  await waitForDaemon('haproxy listening', async () => (await listening(v1Port)) && (await listening(v2Port)) && (await listening(plainPort)), 15_000, daemon.died);
  return { v1Port, v2Port, plainPort, stop: () => daemon.stop() };
}
