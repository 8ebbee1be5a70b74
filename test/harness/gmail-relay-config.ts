// A relay config for e2e tests with the Gmail API backup: DualDelivery, the
// Postfix stand-in as primary, the emulator as Google (its service account key
// written into `dir`), @corp.example.com mapped to @corp.example.org.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RelayConfig } from '../../src/api/relay/config.js';
import type { Relay } from '../../src/relay/relay.js';
import { startGmailEmulator, type GmailEmulator } from './gmail-emulator.js';
import { startPostfix, type PostfixInstance } from './postfix.js';
import { TEST_DOMAINS } from './smtp-tools.js';

export interface GmailRelayParts {
  dir: string;
  postfix: PostfixInstance;
  emu: GmailEmulator;
  /** Stops the relay (if given), the emulator and Postfix, and removes the directory. */
  close(relay?: Relay): Promise<void>;
}

/** A directory, the Postfix stand-in and the Gmail emulator with these mailboxes. */
export async function startGmailRelayParts(prefix: string, users: string[]): Promise<GmailRelayParts> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const postfix = await startPostfix({ domains: TEST_DOMAINS });
  const emu = await startGmailEmulator({ users });
  return {
    dir,
    postfix,
    emu,
    async close(relay) {
      await relay?.stop().catch(() => undefined);
      await emu.close();
      await postfix.destroy();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export async function gmailRelayConfig(o: { dir: string; emu: GmailEmulator; primaryPort: number; instance: string; exclude: unknown[] }): Promise<RelayConfig> {
  const keyFile = join(o.dir, 'sa.json');
  await writeFile(keyFile, o.emu.serviceAccount.keyJson);
  return RelayConfig.parse({
    instance: o.instance,
    spec: {
      domains: TEST_DOMAINS,
      mode: 'DualDelivery',
      primary: { host: '127.0.0.1', port: o.primaryPort, tls: 'None' },
      backup: { gmail: { method: 'GmailApi', serviceAccountSecretRef: { name: 'gmail-sa' }, addressMap: [{ from: '@corp.example.com', to: '@corp.example.org' }] } },
      policy: { exclude: o.exclude },
      relay: { acceptFrom: ['127.0.0.0/8'] },
    },
    listen: { host: '127.0.0.1', port: 0, hostname: 'relay.test' },
    http: { host: '127.0.0.1', port: 0 },
    paths: { spool: join(o.dir, 'spool'), gmailServiceAccount: keyFile },
    google: { rootUrl: o.emu.rootUrl, tokenUrl: o.emu.tokenUrl },
    tuning: { minBackoffMs: 300, maxBackoffMs: 2000, sweepIntervalMs: 200, spoolMinFreeBytes: 0 },
  });
}
