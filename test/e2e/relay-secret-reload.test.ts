// Reload without restart (issue 15, item 4): the relay's mounted Secrets laid
// out as the kubelet lays them out (files behind a ..data symlink that an
// update swaps atomically), renewed in place while the relay runs: the next
// `openssl s_client -starttls smtp` sees the new certificate's serial, the old
// admin token stops working and the new one works; a key that does not match
// its certificate (half-way through an update) keeps the old pair in service.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { startRelay, type Relay } from '../../src/relay/relay.js';
import { relayTestConfig, swaks } from '../harness/smtp-tools.js';
import { selfSignedCert } from '../harness/tls.js';
import { waitFor } from '../harness/wait.js';

const run = promisify(execFile);
const log = pino({ level: process.env.RELAY_LOG ?? 'silent' });
let dir: string;
let relay: Relay | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-reload-'));
});

afterAll(async () => {
  await relay?.stop();
  await rm(dir, { recursive: true, force: true });
}, 60_000);

/** A Secret volume as the kubelet writes it: <vol>/..<version>/<key>, <vol>/..data -> ..<version>, <vol>/<key> -> ..data/<key>. */
async function secretVolume(vol: string, version: string, files: Record<string, string | Buffer>, first: boolean): Promise<void> {
  await mkdir(join(vol, `..${version}`), { recursive: true });
  for (const [k, v] of Object.entries(files)) await writeFile(join(vol, `..${version}`, k), v, { mode: 0o600 });
  await symlink(`..${version}`, join(vol, '..data_tmp'));
  await rename(join(vol, '..data_tmp'), join(vol, '..data')); // the atomic swap
  if (first) for (const k of Object.keys(files)) await symlink(join('..data', k), join(vol, k));
}

async function certPair(name: string): Promise<{ cert: Buffer; key: Buffer; serial: string }> {
  const p = selfSignedCert(dir, 'relay.test', name);
  const serial = (await run('openssl', ['x509', '-noout', '-serial', '-in', p.cert])).stdout.trim().replace(/^serial=/, '');
  return { cert: await readFile(p.cert), key: await readFile(p.key), serial };
}

/** The serial of the certificate a STARTTLS session is offered now. */
async function servedSerial(port: number): Promise<string> {
  const { stdout } = await run('sh', ['-c', `openssl s_client -starttls smtp -connect 127.0.0.1:${port} -servername relay.test </dev/null 2>/dev/null | openssl x509 -noout -serial`], { timeout: 15_000 });
  return stdout.trim().replace(/^serial=/, '');
}

describe('mounted Secrets reloaded without a restart', () => {
  it('a certificate renewed in place is served at the next STARTTLS; the admin token rotates; a mismatched pair is not taken', async () => {
    const tlsVol = join(dir, 'tls');
    const adminVol = join(dir, 'admin');
    const first = await certPair('first');
    await secretVolume(tlsVol, 'v1', { 'tls.crt': first.cert, 'tls.key': first.key }, true);
    await secretVolume(adminVol, 'v1', { token: 'token-one' }, true);
    relay = await startRelay(
      relayTestConfig({
        spool: join(dir, 'spool'),
        primaryPort: 9,
        instance: 'reload',
        spec: { relay: { acceptFrom: ['127.0.0.0/8'], tlsSecretRef: { name: 'relay-tls' } } },
        paths: { tlsCert: join(tlsVol, 'tls.crt'), tlsKey: join(tlsVol, 'tls.key'), adminToken: join(adminVol, 'token') },
        tuning: { secretPollMs: 200 },
      }),
      { log },
    );
    const port = relay.smtpPort;
    expect(await servedSerial(port)).toBe(first.serial);
    const admin = (token: string) => fetch(`http://127.0.0.1:${relay!.httpPort}/admin/failover`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.status);
    expect(await admin('token-one')).toBe(200);

    // cert-manager renews the certificate: the kubelet swaps ..data.
    const second = await certPair('second');
    expect(second.serial).not.toBe(first.serial);
    await secretVolume(tlsVol, 'v2', { 'tls.crt': second.cert, 'tls.key': second.key }, false);
    await waitFor('the renewed certificate served', async () => (await servedSerial(port)) === second.serial, 15_000, 200);

    // The operator rotates the admin token.
    await secretVolume(adminVol, 'v2', { token: 'token-two' }, false);
    await waitFor('the new admin token accepted', async () => (await admin('token-two')) === 200, 15_000, 100);
    expect(await admin('token-one')).toBe(401);

    // Half-way: a certificate whose key is not there yet. The previous pair stays in service.
    const third = await certPair('third');
    await secretVolume(tlsVol, 'v3', { 'tls.crt': third.cert, 'tls.key': second.key }, false);
    await secretVolume(adminVol, 'v3', { token: 'token-three' }, false);
    await waitFor('a later change seen', async () => (await admin('token-three')) === 200, 15_000, 100);
    expect(await servedSerial(port)).toBe(second.serial);
    // ... and once the key follows, the third is served.
    await secretVolume(tlsVol, 'v4', { 'tls.crt': third.cert, 'tls.key': third.key }, false);
    await waitFor('the completed pair served', async () => (await servedSerial(port)) === third.serial, 15_000, 200);
    // Mail still flows over STARTTLS with the renewed certificate.
    const r = await swaks({ port, to: 'alice@corp.example.com', extra: ['--tls'] });
    expect(r.code).toBe(0);
  }, 120_000);
});
