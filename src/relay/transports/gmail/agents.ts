// One keep-alive HTTP agent per protocol for every call to Google (imports,
// searches, token grants): a call reuses an idle connection instead of a new
// TCP and TLS handshake each time (which would add a round trip or two to each
// import's hundreds of milliseconds). Sockets are bounded by the import window.
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';

export class KeepAliveAgents {
  private readonly http: HttpAgent;
  private readonly https: HttpsAgent;

  constructor(maxSockets: number) {
    const o = { keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' as const };
    this.http = new HttpAgent(o);
    this.https = new HttpsAgent(o);
  }

  /** The agent for a URL (the emulator in tests is plain HTTP on loopback). */
  for(url: string | URL): HttpAgent {
    return new URL(url).protocol === 'http:' ? this.http : this.https;
  }

  destroy(): void {
    this.http.destroy();
    this.https.destroy();
  }
}
