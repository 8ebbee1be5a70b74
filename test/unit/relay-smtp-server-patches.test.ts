// One test per patch in src/relay/inbound/smtp-server-patches.ts, each on a
// real SMTPServer: the private member exists with the shape the patch assumes,
// and the patch's effect is seen by a client. When an upgrade of smtp-server
// moves one of them, this file fails.
import { afterAll, afterEach, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { compileCidrs } from '../../src/lib/ip.js';
import { readProxyHeader } from '../../src/relay/inbound/proxy-intake.js';
import * as patch from '../../src/relay/inbound/smtp-server-patches.js';
import { RawSmtp, swaks } from '../harness/smtp-tools.js';
import { selfSignedCert } from '../harness/tls.js';
import { waitUntil } from '../harness/wait.js';

const servers: SMTPServer[] = [];
let tlsDir: string | undefined;

afterAll(async () => {
  if (tlsDir) await rm(tlsDir, { recursive: true, force: true });
});

/** A self-signed certificate for STARTTLS. */
async function tlsFiles(): Promise<{ key: Buffer; cert: Buffer }> {
  tlsDir ??= await mkdtemp(join(tmpdir(), 'smtp-patches-'));
  const { key, cert } = selfSignedCert(tlsDir, 'relay.test');
  return { key: await readFile(key), cert: await readFile(cert) };
}
const clients: RawSmtp[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.write('QUIT\r\n');
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

/** A real SMTPServer on a loopback port; `hook` sees every connection as smtp-server creates it. */
async function start(hook: (c: patch.PatchedConnection, server: SMTPServer) => void, opts: SMTPServerOptions = {}): Promise<{ server: SMTPServer; port: number }> {
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    disableReverseLookup: true,
    // Answered at once, as the relay's own onConnect does (smtp-server's default waits a turn).
    onConnect: (_session, cb) => cb(),
    ...opts,
  });
  servers.push(server);
  patch.onNewConnection(server, (c) => hook(c, server));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, port: patch.listeningPort(server) };
}

async function connect(port: number, greet = true): Promise<RawSmtp> {
  const c = await RawSmtp.open(port);
  clients.push(c);
  if (greet) expect(await c.reply()).toMatch(/^220 /);
  return c;
}

describe('smtp-server patches', () => {
  it('onNewConnection: server.connections is a Set whose add sees each connection before its greeting', async () => {
    const seen: patch.PatchedConnection[] = [];
    const { server, port } = await start((c) => seen.push(c));
    expect((server as unknown as { connections: unknown }).connections).toBeInstanceOf(Set);
    await connect(port);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ id: expect.any(String), remoteAddress: '127.0.0.1' });
    expect(patch.connectedClients(server)).toBe(1);
  });

  it('onClose: connection._onClose runs when the client goes away, once, in plain SMTP and after STARTTLS', async () => {
    let closed = 0;
    const tls = await tlsFiles();
    const { server, port } = await start(
      (c) => {
        expect(typeof c._onClose).toBe('function');
        patch.onClose(c, () => closed++);
      },
      { disabledCommands: ['AUTH'], key: tls.key, cert: tls.cert },
    );
    const c = await connect(port);
    clients.pop();
    c.write('QUIT\r\n');
    await c.reply();
    await waitUntil('the close hook', 5000, () => closed === 1);
    expect(patch.connectedClients(server)).toBe(0);
    // STARTTLS calls removeAllListeners() on the plain socket: a hook there never hears of this session's end.
    const r = await swaks({ port, to: 'a@example.net', extra: ['--tls', '--quit-after', 'TLS'] });
    expect(r.code).toBe(0);
    expect(r.transcript).toMatch(/^<~ +221 /m); // "<~": read over TLS
    await waitUntil('the close hook after STARTTLS', 5000, () => closed === 2);
    expect(patch.connectedClients(server)).toBe(0);
  });

  it('rewriteSizeRefusal: connection.send(code, data, context) carries the SIZE refusal, now with its enhanced code', async () => {
    let refused = 0;
    const { port } = await start(
      (c) => {
        expect(c.send.length).toBe(3);
        patch.rewriteSizeRefusal(c, '5.3.4 Message too big', () => refused++);
      },
      { size: 1000 },
    );
    const c = await connect(port);
    c.write('EHLO client.example\r\n');
    await c.reply();
    c.write('MAIL FROM:<a@example.net> SIZE=5000\r\n');
    expect(await c.reply()).toBe('552 5.3.4 Message too big');
    expect(refused).toBe(1);
    c.write('MAIL FROM:<a@example.net> SIZE=500\r\n');
    expect(await c.reply()).toMatch(/^250 /);
  });

  it("guardLineLength: connection._parser._write(chunk, encoding, next) sees every byte; a long line drops the client", async () => {
    let tooLong = 0;
    const { port } = await start((c) => {
      expect(typeof c._parser._write).toBe('function');
      expect(c._parser._write.length).toBe(3);
      const send = patch.originalSend(c);
      patch.guardLineLength(c, 100, () => {
        tooLong++;
        send(500, '5.5.2 Line too long', false);
      });
    });
    const c = await connect(port);
    c.write(`NOOP ${'x'.repeat(90)}\r\n`);
    expect(await c.reply()).toMatch(/^250 /);
    c.write(`NOOP ${'x'.repeat(50)}`);
    c.write(`${'x'.repeat(60)}\r\n`);
    expect(await c.reply()).toBe('500 5.5.2 Line too long');
    expect(await c.reply()).toBe('');
    expect(c.closed).toBe(true);
    expect(tooLong).toBe(1);
  });

  it('compactDataTail: connection._parser._feedDataStream(chunk, done) keeps _lastBytes, a copy instead of a view into the whole chunk', async () => {
    let conn: patch.PatchedConnection | undefined;
    const { port } = await start(
      (c) => {
        conn = c;
        expect(typeof c._parser._feedDataStream).toBe('function');
        patch.compactDataTail(c);
      },
      // The data is read and dropped; the session then waits in the middle of DATA.
      { onData: (stream) => stream.resume() },
    );
    const c = await connect(port);
    for (const cmd of ['EHLO client.example', 'MAIL FROM:<a@example.net>', 'RCPT TO:<b@example.org>', 'DATA']) {
      c.write(`${cmd}\r\n`);
      await c.reply();
    }
    c.write(`Subject: x\r\n\r\n${'y'.repeat(60_000)}\r\n`);
    await waitUntil('the chunk fed', 5_000, () => conn!._parser._lastBytes !== false);
    const tail = conn!._parser._lastBytes as Buffer;
    expect(tail.toString()).toBe('yy\r\n');
    expect(tail.buffer.byteLength).toBeLessThan(16 * 1024); // not the 60 KB read it came from
    c.close(); // in the middle of DATA: the server's close would wait for it
  });

  it('onActivity: every chunk the client sends (commands and DATA) and every reply is seen', async () => {
    let seen = 0;
    const { port } = await start((c) => patch.onActivity(c, () => seen++));
    const c = await connect(port);
    const afterGreeting = seen;
    expect(afterGreeting).toBeGreaterThanOrEqual(1); // the 220
    c.write('NOOP\r\n');
    expect(await c.reply()).toMatch(/^250 /);
    expect(seen).toBeGreaterThanOrEqual(afterGreeting + 2); // the command and its reply
  });

  it('greetWithoutDelay: connection.init, _setListeners(callback) and connectionReady greet a client that talks first', async () => {
    const { port } = await start((c, server) => {
      expect(c.init.length).toBe(0);
      expect(c._setListeners.length).toBe(1);
      expect(typeof c.connectionReady).toBe('function');
      patch.greetWithoutDelay(server, c, 10, () => undefined);
    });
    const c = await connect(port, false);
    c.write('EHLO client.example\r\n'); // before the greeting: smtp-server's own init answers 421
    expect(await c.reply()).toMatch(/^220 /);
    expect(await c.reply()).toMatch(/^250[- ]/);
  });

  it("greetWithoutDelay keeps smtp-server's maxClients check", async () => {
    let tooMany = 0;
    const { port } = await start((c, server) => {
      const send = patch.originalSend(c);
      patch.greetWithoutDelay(server, c, 1, () => {
        tooMany++;
        send(421, 'Too many connected clients', false);
      });
    });
    await connect(port);
    const second = await connect(port, false);
    expect(await second.reply()).toBe('421 Too many connected clients');
    expect(tooMany).toBe(1);
  });

  it('without greetWithoutDelay, a client that talks first is refused (what the patch removes)', async () => {
    const { port } = await start(() => undefined);
    const c = await connect(port, false);
    c.write('EHLO client.example\r\n');
    expect(await c.reply()).toMatch(/^421 /);
  });

  it('sendAllAway: connection.send and close() end every connected client with a 421', async () => {
    const { server, port } = await start(() => undefined);
    const a = await connect(port);
    const b = await connect(port);
    patch.sendAllAway(server, '4.3.2 shutting down');
    for (const c of [a, b]) {
      expect(await c.reply()).toBe('421 4.3.2 shutting down');
      expect(await c.reply()).toBe('');
    }
    expect(patch.connectedClients(server)).toBe(0);
  });

  it('takeOverProxyHeader: server._handleProxy(socket, callback) is called per socket; the address it gives is the session\'s', async () => {
    const sessions: string[] = [];
    const seen: string[] = [];
    const { server, port } = await start((c) => seen.push(c.remoteAddress), {
      onConnect: (session, cb) => {
        sessions.push(`${session.remoteAddress}:${session.remotePort}`);
        cb();
      },
    });
    expect(typeof (server as unknown as { _handleProxy: unknown })._handleProxy).toBe('function');
    const trusted = compileCidrs(['127.0.0.1/32']);
    patch.takeOverProxyHeader(server, async (socket) => {
      const v = await readProxyHeader(socket, trusted, 5000);
      if (!v.ok) {
        socket.destroy();
        return undefined;
      }
      return v.source ? { remoteAddress: v.source.address, remotePort: v.source.port } : {};
    });
    const c = await connect(port, false);
    c.write('PROXY TCP4 192.0.2.55 127.0.0.1 40123 25\r\n');
    expect(await c.reply()).toMatch(/^220 /);
    c.write('EHLO client.example\r\n');
    expect(await c.reply()).toMatch(/^250[ -]/);
    expect(seen).toEqual(['192.0.2.55']);
    expect(sessions).toEqual(['192.0.2.55:40123']);
    // Refused by the handler: no SMTP session at all.
    const bad = await connect(port, false);
    bad.write('EHLO no-header\r\n');
    expect(await bad.reply()).toBe('');
    expect(seen).toHaveLength(1);
  });

  it('listeningPort: server.server is the net.Server with the bound port', async () => {
    const { server, port } = await start(() => undefined);
    expect(port).toBeGreaterThan(0);
    expect((server as unknown as { server: { address(): { port: number } } }).server.address().port).toBe(port);
  });
});
