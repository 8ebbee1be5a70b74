// A TCP proxy on loopback in front of a server (Postfix as Exchange), which a
// test can take down and bring back instantly: `postfix stop|start` takes a
// second or more, too coarse for outages shorter than one probe period.
//
//   close('refuse')  stops listening: connects are refused (a stopped server);
//   close('reset')   keeps listening but resets every new connection at once
//                    and counts it (a server that crashes on accept), so a test
//                    can tell how many connection attempts an outage saw;
//   open()           forwards again.
// Either close() also cuts the connections in flight. Without traffic of its
// own to the server, every attempt counted while reset is a health probe.
// `replyDelayMs` holds every chunk from the server for that long (in order): a
// slow Exchange, so a test can build a delivery backlog on purpose.
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  readonly port: number;
  readonly state: 'open' | 'refuse' | 'reset';
  /** Connections forwarded since start. */
  readonly forwarded: number;
  /** Connections reset while closed with 'reset' since start. */
  readonly resets: number;
  open(): Promise<void>;
  close(mode?: 'refuse' | 'reset'): Promise<void>;
  /** Closes for good. */
  stop(): Promise<void>;
}

export async function startTcpProxy(o: { port: number; targetPort: number; targetHost?: string; replyDelayMs?: number }): Promise<TcpProxy> {
  const host = '127.0.0.1';
  const sockets = new Set<Socket>();
  let state: TcpProxy['state'] = 'open';
  let forwarded = 0;
  let resets = 0;
  let server: Server | undefined;

  const track = (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };
  const onConnection = (client: Socket) => {
    if (state === 'reset') {
      resets++;
      client.resetAndDestroy();
      return;
    }
    forwarded++;
    const upstream = connect({ host: o.targetHost ?? host, port: o.targetPort });
    track(client);
    track(upstream);
    const cut = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', cut);
    upstream.on('error', cut);
    client.once('close', cut);
    upstream.once('close', cut);
    client.pipe(upstream);
    if (o.replyDelayMs) {
      const delay = o.replyDelayMs;
      upstream.on('data', (c: Buffer) => setTimeout(() => client.destroyed || client.write(c), delay));
    } else upstream.pipe(client);
  };
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = createServer(onConnection);
      s.once('error', reject);
      s.listen(o.port, host, () => {
        s.off('error', reject);
        server = s;
        resolve();
      });
    });
  const unlisten = () =>
    new Promise<void>((resolve) => {
      const s = server;
      server = undefined;
      if (!s) return resolve();
      // close() stops accepting at once; its callback waits for open connections, which we cut below.
      s.close(() => resolve());
      for (const c of sockets) c.destroy();
    });
  const cutAll = () => {
    for (const c of sockets) c.destroy();
  };

  await listen();
  return {
    port: o.port,
    get state() {
      return state;
    },
    get forwarded() {
      return forwarded;
    },
    get resets() {
      return resets;
    },
    async open() {
      state = 'open';
      if (!server) await listen();
    },
    async close(mode = 'refuse') {
      state = mode;
      if (mode === 'refuse') await unlisten();
      else {
        if (!server) await listen();
        cutAll();
      }
    },
    async stop() {
      state = 'refuse';
      await unlisten();
    },
  };
}
