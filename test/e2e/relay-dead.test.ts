// dead/ bounded (issue 15, item 3), against a real relay and Postfix: mail
// Postfix refuses for good (550, unknown user) goes to dead/, which the relay
// keeps under its cap (oldest removed first, counted in relay_dead_removed_total,
// relay_dead_bytes within relay_dead_max_bytes); the CLI exports what is left as
// an mbox and purges it.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { startPostfix, type PostfixInstance } from '../harness/postfix.js';
import { REPO_ROOT } from '../harness/relay-process.js';
import { relayTestConfig, swaks } from '../harness/smtp-tools.js';
import { waitUntil } from '../harness/wait.js';

const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
let postfix: PostfixInstance;
let dir: string;
let relay: Relay | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-dead-'));
  // Postfix refuses nobody@ for good (550).
  postfix = await startPostfix({ domains: ['corp.example.com', 'example.org'], recipients: ['alice@corp.example.com'], rejectRecipients: ['nobody@corp.example.com'] });
}, 60_000);

afterAll(async () => {
  await relay?.stop();
  await postfix?.destroy();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

const metric = async (r: Relay, name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(await r.metrics.registry.metrics())?.[1] ?? NaN);
const cli = (args: string[]) => promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd: REPO_ROOT, env: { ...process.env, NODE_OPTIONS: '' } });

describe('dead/ bounded', () => {
  it('refused mail past the cap: the oldest dead letters go, the metrics say so; the CLI exports and purges the rest', async () => {
    const spool = join(dir, 'spool');
    const cap = 12_000; // about three 3 KB messages with their states
    relay = await startRelay(
      relayTestConfig({ spool, primaryPort: postfix.port, instance: 'dead', spec: { relay: { acceptFrom: ['127.0.0.0/8'], spool: { deadLetters: { maxSize: String(cap) } } } }, tuning: { deadSweepIntervalMs: 100 } }),
      { log },
    );
    for (let i = 0; i < 6; i++) {
      const r = await swaks({ port: relay.smtpPort, to: 'nobody@corp.example.com', headers: [`Message-ID: <dead-${i}@partner.example.net>`], body: 'x'.repeat(3000) } as never);
      expect(r.code).toBe(0);
      await waitUntil(`message ${i} in dead/`, 30_000, async () => (await relay!.metrics.registry.metrics()).includes(`relay_dead_lettered_total{instance="dead",reason="rejected"} ${i + 1}`));
    }
    const onDisk = async () => {
      const files = await readdir(join(spool, 'dead'));
      // The relay may remove a file between the readdir and its stat: gone counts nothing.
      const gone = (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? { size: 0 } : Promise.reject(err));
      return (await Promise.all(files.map((f) => stat(join(spool, 'dead', f)).catch(gone)))).reduce((n, s) => n + s.size, 0);
    };
    await waitUntil('dead/ under its cap', 10_000, async () => (await metric(relay!, 'relay_dead_removed_total')) >= 1 && (await onDisk()) <= cap);
    await waitUntil('the metric up to date', 10_000, async () => (await metric(relay!, 'relay_dead_bytes')) === (await onDisk()));
    expect(await metric(relay, 'relay_dead_max_bytes')).toBe(cap);
    await relay.stop(); // no sweep from here on
    const left = (await readdir(join(spool, 'dead'))).filter((f) => f.endsWith('.eml'));
    expect(left.length).toBeGreaterThanOrEqual(1);
    expect(left.length).toBeLessThan(6);

    const mbox = join(dir, 'dead.mbox');
    await cli(['dead', 'export', '--spool', spool, '--out', mbox]);
    const text = await readFile(mbox, 'utf8');
    expect(text.match(/^X-Mail-Continuity-Dead-Reason: /gm)).toHaveLength(left.length);
    expect(text).toMatch(/^Message-ID: <dead-5@partner\.example\.net>$/im); // the newest stays
    expect(text).not.toMatch(/^Message-ID: <dead-0@partner\.example\.net>$/im); // the oldest went first
    const purged = await cli(['dead', 'purge', '--all', '--spool', spool]);
    expect(purged.stdout).toMatch(new RegExp(`removed ${left.length} `));
    expect(await readdir(join(spool, 'dead'))).toEqual([]);
    await expect(cli(['dead', 'purge', '--spool', spool])).rejects.toMatchObject({ code: 2 });
  }, 120_000);
});
