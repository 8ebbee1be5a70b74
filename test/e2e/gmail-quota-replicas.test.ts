// Gmail's per-user quota across relay replicas: two relay processes import
// into one mailbox of the Gmail emulator, which enforces Gmail's 15,000 units
// per user per minute strictly (a sliding minute; 429 rateLimitExceeded past
// it). Each relay is given its share the way the operator gives it
// (PUT /admin/failover gmailUnitsPerMinute = mailboxQuotaShare(replicas)), so
// together they stay within 13,500 units a minute plus one burst of 1,000,
// and Gmail never refuses an import for quota. 640 messages (16,000 units)
// take the two relays more than a minute: the test covers a whole window.
// Without the split each relay would spend 13,500 + 1,000 on its own and the
// emulator would answer 429 within about 30 s.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { GMAIL_MAILBOX_UNITS_PER_MINUTE, mailboxQuotaShare } from '../../src/api/relay/admin.js';
import { startRelay } from '../../src/relay/relay.js';
import { freePort } from '../harness/controlplane.js';
import { gmailRelayConfig, startGmailRelayParts, type GmailRelayParts } from '../harness/gmail-relay-config.js';
import { waitForPort } from '../harness/postfix.js';
import { smtpSource } from '../harness/smtp-tools.js';
import { waitUntil } from '../harness/wait.js';

const MAILBOX = 'alice@corp.example.org';
const TOKEN = 'quota-test-token';
const MESSAGES = 640;
let parts: GmailRelayParts;
const children: ChildProcess[] = [];

beforeAll(async () => {
  parts = await startGmailRelayParts('gmail-quota-', [MAILBOX]);
}, 60_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await parts?.close();
}, 60_000);

/** A relay in its own process (as in its pod), DualDelivery to Postfix and the emulator. */
async function relayProcess(i: number): Promise<{ smtpPort: number; adminUrl: string }> {
  const [smtpPort, httpPort] = [await freePort(), await freePort()];
  const tokenFile = join(parts.dir, `token-${i}`);
  await writeFile(tokenFile, TOKEN);
  const config = await gmailRelayConfig({ dir: parts.dir, emu: parts.emu, primaryPort: parts.postfix.port, instance: `quota-${i}`, exclude: [] });
  Object.assign(config.listen, { port: smtpPort });
  Object.assign(config.http, { port: httpPort });
  Object.assign(config.paths, { spool: join(parts.dir, `spool-${i}`), adminToken: tokenFile });
  const file = join(parts.dir, `relay-${i}.json`);
  await writeFile(file, JSON.stringify(config));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/relay/main.ts', '--config', file], {
    cwd: join(import.meta.dirname, '..', '..'),
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  child.on('exit', (code) => code && process.stderr.write(`relay ${i} exited ${code}: ${stderr}\n`));
  children.push(child);
  await waitForPort(smtpPort, 'up', 30_000);
  return { smtpPort, adminUrl: `http://127.0.0.1:${httpPort}/admin/failover` };
}

/** What the operator's sync sends each replica (src/operator/failover/continuity.ts). */
async function tellShare(adminUrl: string, replicas: number): Promise<number> {
  const res = await fetch(adminUrl, {
    method: 'PUT',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ active: false, gmailUnitsPerMinute: mailboxQuotaShare(replicas) }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { gmailUnitsPerMinute: number }).gmailUnitsPerMinute;
}

describe("Gmail's per-user quota with two relay replicas", () => {
  it('two relay processes importing into one mailbox never exceed 15,000 units a minute (no 429)', async () => {
    expect(parts.emu.quotaPerMinute).toBe(15_000);
    const relays = [await relayProcess(0), await relayProcess(1)];
    for (const r of relays) expect(await tellShare(r.adminUrl, relays.length)).toBe(GMAIL_MAILBOX_UNITS_PER_MINUTE / 2);

    const started = Date.now();
    const sent = await Promise.all(
      relays.map((r) => smtpSource({ port: r.smtpPort, messages: MESSAGES / 2, sessions: 4, to: 'alice@corp.example.com', length: 2000, reuseConnections: true, timeoutMs: 120_000 })),
    );
    for (const s of sent) expect(s).toMatchObject({ code: 0, timedOut: false });
    await waitUntil(`${MESSAGES} messages imported`, 240_000, () => parts.emu.messages(MAILBOX).length >= MESSAGES);
    const elapsedMs = Date.now() - started;

    const refused = parts.emu.requests.filter((r) => r.status === 429);
    expect(refused).toEqual([]);
    expect(parts.emu.messages(MAILBOX)).toHaveLength(MESSAGES);
    // The budget, not something else, set the pace: 16,000 units at 13,500 a minute after a
    // 1,000-unit burst take at least 66 s (a much faster run would mean no pacing at all).
    expect(elapsedMs).toBeGreaterThan(((MESSAGES * 25 - 1000) / 13_500) * 60_000 - 2000);
  }, 300_000);

  it('a relay that restarts keeps its last share (kept on the spool volume), not the whole budget', async () => {
    const tokenFile = join(parts.dir, 'token-restart');
    await writeFile(tokenFile, TOKEN);
    const config = await gmailRelayConfig({ dir: parts.dir, emu: parts.emu, primaryPort: parts.postfix.port, instance: 'quota-restart', exclude: [] });
    Object.assign(config.paths, { spool: join(parts.dir, 'spool-restart'), adminToken: tokenFile });
    const log = pino({ level: 'silent' });
    const url = (port: number) => `http://127.0.0.1:${port}/admin/failover`;
    const snapshot = async (port: number) =>
      ((await (await fetch(url(port), { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { gmailUnitsPerMinute: number }).gmailUnitsPerMinute;

    const first = await startRelay(config, { log });
    expect(await snapshot(first.httpPort)).toBe(13_500); // never told: the whole budget
    expect(await tellShare(url(first.httpPort), 3)).toBe(4_500);
    await waitUntil('the share on the spool volume', 5000, async () => (await readFile(join(config.paths.spool, 'gmail-quota-share'), 'utf8').catch(() => '')).trim() === '4500');
    await first.stop();

    const second = await startRelay(config, { log });
    try {
      expect(await snapshot(second.httpPort)).toBe(4_500);
    } finally {
      await second.stop();
    }
  });
});
