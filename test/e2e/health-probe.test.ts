// The primary's health probes against real servers on 127.0.0.1: a private
// Postfix (healthy, stopped, STARTTLS with a self-signed certificate), tiny
// misbehaving SMTP servers (silent, 421 greeting, EHLO refused, reset, no
// STARTTLS, implicit TLS), an HTTPS server with a self-signed certificate, and
// the probe loop following a Postfix outage and its recovery.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { primaryHealthyCondition, type HealthState } from '../../src/operator/health/hysteresis.js';
import { ProbeLoop } from '../../src/operator/health/loop.js';
import {
  probeHttps,
  probePrimary,
  probeSmtp,
  type PrimarySpec,
  type ProbeResult,
} from '../../src/operator/health/probe.js';
import { freePort, startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { TEST_DOMAINS } from '../harness/smtp-tools.js';
import { selfSignedCert } from '../harness/tls.js';
import { waitFor } from '../harness/wait.js';

const HOST = '127.0.0.1';
let postfix: PostfixInstance;
let dir: string;
let cert: string;
let key: string;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'health-probe-'));
  await chmod(dir, 0o755);
  ({ cert, key } = selfSignedCert(dir, 'exchange.test', 'exchange'));
  postfix = await startPostfix({ domains: TEST_DOMAINS, tls: { cert, key } });
}, 120_000);

afterAll(async () => {
  for (const c of closers) await c().catch(() => undefined);
  await postfix?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

interface FakeServer {
  port: number;
  /** Connections accepted so far, and how many the peer (the probe) has closed. */
  accepted: number;
  closed: number;
  lines: string[];
}

/** A TCP (or implicit-TLS) server whose per-connection behaviour the test writes. */
async function fakeServer(
  onConnection: (sock: Socket, srv: FakeServer) => void,
  tlsServer = false,
): Promise<FakeServer> {
  const state: FakeServer = { port: 0, accepted: 0, closed: 0, lines: [] };
  const sockets = new Set<Socket>();
  const handle = (sock: Socket) => {
    state.accepted++;
    sockets.add(sock);
    sock.on('error', () => undefined);
    sock.on('close', () => {
      state.closed++;
      sockets.delete(sock);
    });
    onConnection(sock, state);
  };
  const server: Server = tlsServer
    ? createTlsServer({ cert: readFileSync(cert), key: readFileSync(key) }, handle)
    : createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  state.port = (server.address() as { port: number }).port;
  closers.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return state;
}

/** A minimal SMTP dialogue: greeting, EHLO reply, QUIT. */
function smtpDialogue(greeting: string, ehloReply: string) {
  return (sock: Socket, srv: FakeServer) => {
    sock.write(`${greeting}\r\n`);
    let buf = '';
    sock.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        srv.lines.push(line);
        if (/^EHLO /i.test(line)) sock.write(`${ehloReply}\r\n`);
        else if (/^QUIT/i.test(line)) sock.end('221 2.0.0 Bye\r\n');
        else sock.write('502 5.5.2 Error: command not recognized\r\n');
      }
    });
  };
}

function failed(r: ProbeResult): Extract<ProbeResult, { ok: false }> {
  if (r.ok) throw new Error(`expected a failed probe, got ${JSON.stringify(r)}`);
  return r;
}

describe('probeSmtp against Postfix', () => {
  it('a running Postfix passes (tls None)', async () => {
    const r = await probeSmtp({
      host: HOST,
      port: postfix.port,
      tls: 'None',
      timeoutMs: 5_000,
      heloName: 'probe.test',
    });
    expect(r).toEqual({ ok: true, latencyMs: expect.any(Number) });
    await waitFor(
      'Postfix logging the probe session',
      async () => /disconnect from \S+\[127\.0\.0\.1\] ehlo=1 quit=1 commands=2/.test(await postfix.log()),
      10_000,
    );
  });

  it('STARTTLS with insecureSkipTLSVerify passes, and Postfix saw the TLS session', async () => {
    const r = await probeSmtp({
      host: HOST,
      port: postfix.port,
      tls: 'STARTTLS',
      insecureSkipTLSVerify: true,
      timeoutMs: 5_000,
      heloName: 'probe.test',
    });
    expect(r.ok).toBe(true);
    await waitFor(
      'Postfix logging ehlo=2 starttls=1',
      async () => /ehlo=2 starttls=1 quit=1/.test(await postfix.log()),
      10_000,
    );
  });

  it('STARTTLS verifying the self-signed certificate fails with TLSError', async () => {
    const r = failed(await probeSmtp({ host: HOST, port: postfix.port, tls: 'STARTTLS', timeoutMs: 5_000 }));
    expect(r.reason).toBe('TLSError');
    expect(r.message).toContain(`127.0.0.1:${postfix.port}`);
    expect(r.message).toMatch(/self[- ]signed/i);
  });

  it('a stopped Postfix gives ConnectionRefused, and it passes again once started', async () => {
    await postfix.stop();
    try {
      const r = failed(await probeSmtp({ host: HOST, port: postfix.port, tls: 'None', timeoutMs: 5_000 }));
      expect(r.reason).toBe('ConnectionRefused');
      expect(r.message).toBe(`127.0.0.1:${postfix.port} refused the connection`);
    } finally {
      await postfix.start();
    }
    expect((await probeSmtp({ host: HOST, port: postfix.port, tls: 'None', timeoutMs: 5_000 })).ok).toBe(true);
  }, 60_000);
});

describe('probeSmtp against misbehaving servers', () => {
  it('a server that accepts and says nothing times out within timeoutMs, and the probe closes its socket', async () => {
    const srv = await fakeServer(() => undefined);
    const t = Date.now();
    const r = failed(await probeSmtp({ host: HOST, port: srv.port, tls: 'None', timeoutMs: 600 }));
    const took = Date.now() - t;
    expect(r.reason).toBe('Timeout');
    expect(r.message).toBe(`127.0.0.1:${srv.port} did not answer within 600 ms (waiting for the banner)`);
    expect(took).toBeGreaterThanOrEqual(590);
    expect(took).toBeLessThan(600 + 1_500);
    await waitFor('the server to see the probe close', () => srv.closed === 1, 5_000, 20);
  });

  it('a 421 greeting is a BadBanner that quotes the server', async () => {
    const srv = await fakeServer(smtpDialogue('421 4.3.2 Service not available', '250 ok'));
    const r = failed(await probeSmtp({ host: HOST, port: srv.port, tls: 'None', timeoutMs: 2_000 }));
    expect(r.reason).toBe('BadBanner');
    expect(r.message).toBe(`127.0.0.1:${srv.port} answered "421 4.3.2 Service not available" instead of a 220 banner`);
    await waitFor('closed', () => srv.closed === 1, 5_000, 20);
  });

  it('a multi-line 554 greeting is a BadBanner; a multi-line 220 greeting is fine', async () => {
    const bad = await fakeServer(smtpDialogue('554-exchange.test no service\r\n554 5.3.2 go away', '250 ok'));
    const r = failed(await probeSmtp({ host: HOST, port: bad.port, tls: 'None', timeoutMs: 2_000 }));
    expect(r.reason).toBe('BadBanner');
    expect(r.message).toContain('"554-exchange.test no service / 554 5.3.2 go away"');
    const good = await fakeServer(
      smtpDialogue('220-exchange.test ESMTP\r\n220-more text\r\n220 ready', '250-exchange.test\r\n250 SIZE 1000'),
    );
    expect((await probeSmtp({ host: HOST, port: good.port, tls: 'None', timeoutMs: 2_000 })).ok).toBe(true);
    expect(good.lines[0]).toMatch(/^EHLO \S+$/);
    expect(good.lines[1]).toBe('QUIT');
  });

  it('a 502 answer to EHLO is an SMTPError', async () => {
    const srv = await fakeServer(smtpDialogue('220 exchange.test ESMTP', '502 5.5.2 Error: command not recognized'));
    const r = failed(
      await probeSmtp({ host: HOST, port: srv.port, tls: 'None', timeoutMs: 2_000, heloName: 'probe.test' }),
    );
    expect(r.reason).toBe('SMTPError');
    expect(r.message).toBe(`127.0.0.1:${srv.port} answered "502 5.5.2 Error: command not recognized" to EHLO`);
    expect(srv.lines[0]).toBe('EHLO probe.test');
  });

  it('tls STARTTLS against a server that does not offer it is an SMTPError', async () => {
    const srv = await fakeServer(smtpDialogue('220 exchange.test ESMTP', '250-exchange.test\r\n250 8BITMIME'));
    const r = failed(
      await probeSmtp({ host: HOST, port: srv.port, tls: 'STARTTLS', insecureSkipTLSVerify: true, timeoutMs: 2_000 }),
    );
    expect(r.reason).toBe('SMTPError');
    expect(r.message).toContain('does not offer STARTTLS');
    expect(srv.lines).not.toContain('STARTTLS');
  });

  it('a server that drops the connection at once is a ConnectionReset', async () => {
    const srv = await fakeServer((sock) => sock.destroy());
    const r = failed(await probeSmtp({ host: HOST, port: srv.port, tls: 'None', timeoutMs: 2_000 }));
    expect(r.reason).toBe('ConnectionReset');
    expect(r.message).toContain(`127.0.0.1:${srv.port}`);
  });

  it('implicit TLS: passes with insecureSkipTLSVerify, TLSError when verifying, TLSError against a plain server', async () => {
    const srv = await fakeServer(smtpDialogue('220 exchange.test ESMTP', '250 exchange.test'), true);
    expect(
      (await probeSmtp({ host: HOST, port: srv.port, tls: 'Implicit', insecureSkipTLSVerify: true, timeoutMs: 3_000 }))
        .ok,
    ).toBe(true);
    expect(srv.lines[1]).toBe('QUIT');
    const verified = failed(await probeSmtp({ host: HOST, port: srv.port, tls: 'Implicit', timeoutMs: 3_000 }));
    expect(verified.reason).toBe('TLSError');
    const plain = failed(
      await probeSmtp({
        host: HOST,
        port: postfix.port,
        tls: 'Implicit',
        insecureSkipTLSVerify: true,
        timeoutMs: 3_000,
      }),
    );
    expect(plain.reason).toBe('TLSError');
    expect(plain.message).toMatch(/^TLS handshake with 127\.0\.0\.1:\d+ failed/);
  });
});

describe('probeHttps', () => {
  let server: HttpsServer;
  let port: number;
  beforeAll(async () => {
    server = createHttpsServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
      if (req.url === '/owa/healthcheck.htm')
        res.writeHead(200, { 'content-type': 'text/html' }).end('200 OK<br/>exchange');
      else if (req.url === '/down') res.writeHead(503).end('Service Unavailable');
      // /silent: never answers
    });
    await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
    port = (server.address() as { port: number }).port;
    closers.push(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
  });

  it('200 passes; 503 is HTTPStatus with the status seen', async () => {
    expect(
      await probeHttps({
        url: `https://${HOST}:${port}/owa/healthcheck.htm`,
        insecureSkipTLSVerify: true,
        timeoutMs: 3_000,
      }),
    ).toEqual({ ok: true, latencyMs: expect.any(Number) });
    const r = failed(
      await probeHttps({
        url: `https://${HOST}:${port}/down`,
        expectedStatus: 200,
        insecureSkipTLSVerify: true,
        timeoutMs: 3_000,
      }),
    );
    expect(r.reason).toBe('HTTPStatus');
    expect(r.status).toBe(503);
    expect(r.message).toBe(`GET https://${HOST}:${port}/down answered 503 (expected 200)`);
    // expectedStatus is honoured both ways.
    expect(
      (
        await probeHttps({
          url: `https://${HOST}:${port}/down`,
          expectedStatus: 503,
          insecureSkipTLSVerify: true,
          timeoutMs: 3_000,
        })
      ).ok,
    ).toBe(true);
  });

  it('verifying the self-signed certificate is a TLSError', async () => {
    const r = failed(await probeHttps({ url: `https://${HOST}:${port}/owa/healthcheck.htm`, timeoutMs: 3_000 }));
    expect(r.reason).toBe('TLSError');
    expect(r.message).toMatch(/self[- ]signed/i);
  });

  it('no answer is a Timeout within timeoutMs; a closed port is ConnectionRefused', async () => {
    const t = Date.now();
    const r = failed(
      await probeHttps({ url: `https://${HOST}:${port}/silent`, insecureSkipTLSVerify: true, timeoutMs: 500 }),
    );
    expect(r.reason).toBe('Timeout');
    expect(Date.now() - t).toBeLessThan(500 + 1_500);
    const closed = await freePort();
    const c = failed(await probeHttps({ url: `https://${HOST}:${closed}/`, timeoutMs: 3_000 }));
    expect(c.reason).toBe('ConnectionRefused');
    expect(c.message).toBe(`127.0.0.1:${closed} refused the connection`);
  });

  it('probePrimary runs SMTP and HTTPS and fails with the failing one', async () => {
    const spec = (path: string, smtpPort = postfix.port): PrimarySpec => ({
      host: HOST,
      port: smtpPort,
      tls: 'STARTTLS',
      insecureSkipTLSVerify: true,
      health: {
        smtp: { enabled: true },
        https: { url: `https://${HOST}:${port}${path}`, expectedStatus: 200, insecureSkipTLSVerify: true },
        periodSeconds: 10,
        timeoutSeconds: 3,
        failureThreshold: 3,
        successThreshold: 2,
      },
    });
    expect((await probePrimary(spec('/owa/healthcheck.htm'))).ok).toBe(true);
    expect(failed(await probePrimary(spec('/down'))).reason).toBe('HTTPStatus');
    const closed = await freePort();
    const both = failed(await probePrimary(spec('/down', closed)));
    expect(both.reason).toBe('ConnectionRefused');
    expect(both.probe).toBe('smtp');
  });
});

describe('ProbeLoop against Postfix', () => {
  it('reports PrimaryHealthy False after failureThreshold failed probes and True after successThreshold good ones', async () => {
    const reports: { at: number; state: HealthState }[] = [];
    let probes = 0;
    const loop = new ProbeLoop({
      onChange: (_key, state) => reports.push({ at: probes, state }),
      probe: async (p, o) => {
        const r = await probePrimary(p, o);
        probes++;
        return r;
      },
    });
    const primary: PrimarySpec = {
      host: HOST,
      port: postfix.port,
      tls: 'STARTTLS',
      insecureSkipTLSVerify: true,
      health: {
        smtp: { enabled: true },
        periodSeconds: 1,
        timeoutSeconds: 1,
        failureThreshold: 3,
        successThreshold: 2,
      },
    };
    const status = () => {
      const last = reports[reports.length - 1];
      return last ? primaryHealthyCondition(last.state).status : undefined;
    };
    loop.ensure('ns/mc', primary);
    try {
      await waitFor('PrimaryHealthy True', () => status() === 'True', 15_000);
      expect(reports).toHaveLength(1);

      const stoppedAt = probes;
      await postfix.stop();
      await waitFor('PrimaryHealthy False', () => status() === 'False', 20_000);
      const down = reports[reports.length - 1]!;
      expect(down.state.consecutiveFailures).toBe(3);
      expect(down.at - stoppedAt).toBeGreaterThanOrEqual(3);
      expect(primaryHealthyCondition(down.state)).toMatchObject({ reason: 'ConnectionRefused' });
      expect(primaryHealthyCondition(down.state).message).toContain(`127.0.0.1:${postfix.port} refused the connection`);
      // The failures below the threshold did not change the condition: True, then False, no report in between.
      expect(reports.map((r) => primaryHealthyCondition(r.state).status)).toEqual(['True', 'False']);

      const startedAt = probes;
      await postfix.start();
      await waitFor('PrimaryHealthy True again', () => status() === 'True', 20_000);
      const up = reports[reports.length - 1]!;
      expect(up.state.consecutiveSuccesses).toBe(2);
      expect(up.at - startedAt).toBeGreaterThanOrEqual(2);
      expect(reports.map((r) => primaryHealthyCondition(r.state).status)).toEqual(['True', 'False', 'True']);
    } finally {
      await loop.stopAll();
      await postfix.start();
    }
  }, 90_000);
});
