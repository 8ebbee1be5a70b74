// Recipient verification at RCPT (issue 15, item 2) with the static list of
// spec.relay.recipients, against a running relay while Exchange is down (its
// port closed): an unknown user gets 550 5.1.1 at RCPT, a known one 250 and its
// message is queued; the list's ConfigMap volume updated in place (the kubelet's
// ..data swap) is taken without a restart; a list that does not parse keeps the
// previous one.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { freePort } from '../harness/controlplane.js';
import { RawSmtp, relayTestConfig } from '../harness/smtp-tools.js';
import { waitFor } from '../harness/wait.js';

/** The relay's warnings, to see a change it refused. */
const warnings: Array<Record<string, unknown>> = [];
const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line) as Record<string, unknown>) });
let dir: string;
let relay: Relay | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-recipients-'));
});

afterAll(async () => {
  await relay?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

/** A ConfigMap volume as the kubelet writes it, updated by a swap of ..data. */
async function listVolume(vol: string, version: string, text: string, first: boolean): Promise<void> {
  await mkdir(join(vol, `..${version}`), { recursive: true });
  await writeFile(join(vol, `..${version}`, 'recipients'), text);
  await symlink(`..${version}`, join(vol, '..data_tmp'));
  await rename(join(vol, '..data_tmp'), join(vol, '..data'));
  if (first) await symlink(join('..data', 'recipients'), join(vol, 'recipients'));
}

async function rcpt(port: number, to: string): Promise<string> {
  const s = await RawSmtp.open(port);
  try {
    await s.reply();
    await s.cmd('EHLO mx.partner.example.net');
    expect(await s.cmd('MAIL FROM:<sender@partner.example.net>')).toMatch(/^250/);
    return await s.cmd(`RCPT TO:<${to}>`);
  } finally {
    s.close();
  }
}

describe('recipient verification at RCPT', () => {
  it('unknown users get 550 5.1.1 while Exchange is down; the list changes without a restart; a broken list keeps the previous one', async () => {
    const vol = join(dir, 'recipients');
    await listVolume(vol, 'v1', 'alice@corp.example.com\n@example.org\n', true);
    const exchangeDown = await freePort(); // nothing listens there
    relay = await startRelay(
      relayTestConfig({ spool: join(dir, 'spool'), primaryPort: exchangeDown, instance: 'rcpt', paths: { recipients: join(vol, 'recipients') }, tuning: { secretPollMs: 100 } }),
      { log },
    );
    const port = relay.smtpPort;
    expect(await rcpt(port, 'nobody@corp.example.com')).toMatch(/^550 5\.1\.1 <nobody@corp\.example\.com>: Recipient address rejected: User unknown/);
    expect(await rcpt(port, 'Alice@Corp.Example.com')).toMatch(/^250/);
    expect(await rcpt(port, 'anyone@example.org')).toMatch(/^250/);
    expect(await rcpt(port, 'someone@elsewhere.example')).toMatch(/^550 5\.7\.1 /); // not our domain: relay denied, as before

    // A whole message to a known user is queued; the unknown recipient of the same envelope is refused alone.
    const s = await RawSmtp.open(port);
    await s.reply();
    await s.cmd('EHLO mx.partner.example.net');
    await s.cmd('MAIL FROM:<sender@partner.example.net>');
    expect(await s.cmd('RCPT TO:<alice@corp.example.com>')).toMatch(/^250/);
    expect(await s.cmd('RCPT TO:<ghost@corp.example.com>')).toMatch(/^550 5\.1\.1 /);
    expect(await s.cmd('DATA')).toMatch(/^354/);
    expect(await s.cmd('Subject: hi\r\n\r\nhello\r\n.')).toMatch(/^250 2\.0\.0 Ok: queued as /);
    s.close();
    const queued = [...relay.scheduler.states()];
    expect(queued.map((q) => q.rcptTo)).toEqual([['alice@corp.example.com']]);
    expect(await relay.metrics.registry.metrics()).toMatch(/relay_smtp_rejected_total\{instance="rcpt",reason="unknown-recipient"\} [1-9]/);

    // The ConfigMap gains bob: taken without a restart.
    await listVolume(vol, 'v2', 'alice@corp.example.com\nbob@corp.example.com\n', false);
    await waitFor('bob accepted', async () => /^250/.test(await rcpt(port, 'bob@corp.example.com')), 10_000, 100);
    expect(await rcpt(port, 'anyone@example.org')).toMatch(/^550 5\.1\.1 /);

    // A list with a broken line: the previous list stays in service.
    await listVolume(vol, 'v3', 'carol@corp.example.com\nthis is not an address\n', false);
    await waitFor('the broken list seen and refused', () => warnings.some((w) => w.secret === 'recipients' && String(w.err).includes('line 2: "this is not an address"')), 10_000, 50);
    expect(await rcpt(port, 'bob@corp.example.com')).toMatch(/^250/);
    expect(await rcpt(port, 'carol@corp.example.com')).toMatch(/^550 5\.1\.1 /);
  }, 60_000);
});
