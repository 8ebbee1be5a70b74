// The Gmail API transport against the strict emulator, through the real
// googleapis client and google-auth-library (JWT grant, media upload).
import { createHash } from 'node:crypto';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import pino from 'pino';
import { RelayConfig } from '../../src/api/relay/config.js';
import { isLoopbackUrl } from '../../src/lib/ip.js';
import { mapAddress } from '../../src/relay/transports/address-map.js';
import { classifyGoogleError, retryAfterFrom } from '../../src/relay/transports/gmail/google-errors.js';
import {
  checkBackupReachable,
  createGmailTransport,
  type GmailTransport,
  type GmailTransportDeps,
} from '../../src/relay/transports/gmail/transport.js';
import type { RecipientOutcome, SpooledMessage } from '../../src/relay/types.js';
import { SCOPES, startGmailEmulator, type GmailEmulator } from '../harness/gmail-emulator.js';
import { matches as matchesQuery, parseQuery } from '../harness/gmail-query.js';
import { validSpec } from '../fixtures/mailcontinuity.js';

jest.setTimeout(60_000);

const ALICE = 'alice@corp.example.org';
const BOB = 'bob@corp.example.org';
const CAROL = 'carol@archive.example.net';
const addressMap = [
  { from: 'ceo@corp.example.com', to: CAROL },
  { from: '@corp.example.com', to: '@corp.example.org' },
];
const log = pino({ level: process.env.LOG_LEVEL ?? 'silent' });

/** Waits until `cond` holds, checking every 20 ms, or fails after `timeoutMs`. */
async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('Gmail API transport', () => {
  let emu: GmailEmulator;
  let dir: string;
  let keyFile: string;
  let label: string;
  let seq = 0;
  const transports: GmailTransport[] = [];

  beforeAll(async () => {
    emu = await startGmailEmulator({ users: [ALICE, BOB, CAROL] });
    dir = await mkdtemp(join(tmpdir(), 'gmail-transport-'));
    keyFile = join(dir, 'sa.json');
    await writeFile(keyFile, emu.serviceAccount.keyJson);
    label = emu.createLabel(ALICE, 'Continuity');
    emu.createLabel(CAROL, 'Continuity'); // Label_2: not used by the config
  });
  afterAll(async () => {
    await Promise.all(transports.map((t) => t.close()));
    await emu?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function configFor(gmail: Record<string, unknown> = {}, google: Record<string, unknown> = {}, saFile = keyFile) {
    const spec = validSpec();
    spec.backup = {
      gmail: { method: 'GmailApi', serviceAccountSecretRef: { name: 'gmail-sa' }, addressMap, ...gmail },
    };
    return RelayConfig.parse({
      spec,
      paths: { spool: dir, gmailServiceAccount: saFile },
      google: { rootUrl: emu.rootUrl, tokenUrl: emu.tokenUrl, ...google },
    });
  }

  function transport(gmail: Record<string, unknown> = {}, deps: Partial<GmailTransportDeps> = {}, saFile?: string) {
    const t = createGmailTransport(configFor(gmail, {}, saFile), { log, ...deps });
    transports.push(t);
    return t;
  }

  /** Writes a spooled message (raw RFC 5322, CRLF) and describes it as the spool would. */
  async function spool(opts: { to?: string[]; messageId?: string | null; body?: string; raw?: Buffer } = {}) {
    const id = `m${++seq}-${Date.now()}`;
    const messageId = opts.messageId === null ? undefined : (opts.messageId ?? `${id}@sender.example.net`);
    const to = opts.to ?? ['alice@corp.example.com'];
    const raw =
      opts.raw ??
      Buffer.from(
        [
          'Received: from mx.sender.example.net by relay; Tue, 24 Nov 2026 10:00:01 +0000',
          'From: Sender <sender@sender.example.net>',
          `To: ${to.join(', ')}`,
          `Subject: continuity ${id}`,
          'Date: Tue, 24 Nov 2026 10:00:00 +0000',
          ...(messageId ? [`Message-ID: <${messageId}>`] : []),
          'MIME-Version: 1.0',
          'Content-Type: text/plain; charset=utf-8',
          '',
          opts.body ?? `Hello from ${id}.`,
          '',
        ].join('\r\n'),
      );
    const path = join(dir, `${id}.eml`);
    await writeFile(path, raw);
    const message: SpooledMessage = {
      id,
      path,
      mailFrom: 'sender@sender.example.net',
      rcptTo: to,
      ...(messageId ? { messageId } : {}),
      sha256: createHash('sha256').update(raw).digest('hex'),
      size: raw.length,
      receivedAt: Date.now(),
    };
    return { message, raw };
  }

  const copiesOf = (user: string, messageId: string) =>
    emu.messages(user).filter((m) => m.rfc822MessageId === messageId);
  const gmailCalls = () => emu.requests.filter((r) => r.path.includes('/gmail/v1/')).length;

  describe('mapAddress', () => {
    it('rewrites domains keeping the local part, matches full addresses exactly, first rule wins', () => {
      expect(mapAddress(addressMap, 'alice@corp.example.com')).toBe('alice@corp.example.org');
      expect(mapAddress(addressMap, 'alice@CORP.Example.COM')).toBe('alice@corp.example.org');
      expect(mapAddress(addressMap, 'ceo@corp.example.com')).toBe(CAROL);
      expect(mapAddress(addressMap, 'ceo@Corp.Example.com')).toBe(CAROL);
      expect(mapAddress(addressMap, 'CEO@corp.example.com')).toBe('CEO@corp.example.org'); // local parts are exact
      expect(mapAddress(addressMap, 'alice@example.org')).toBe('alice@example.org');
      expect(mapAddress(addressMap, 'alice@sub.corp.example.com')).toBe('alice@sub.corp.example.com');
      const domainFirst = [addressMap[1]!, addressMap[0]!];
      expect(mapAddress(domainFirst, 'ceo@corp.example.com')).toBe('ceo@corp.example.org');
      expect(mapAddress([], 'x@y.z')).toBe('x@y.z');
    });
  });

  describe('configuration guards', () => {
    it('accepts only loopback token URLs', () => {
      for (const u of [
        'http://127.0.0.1:1/token',
        'http://127.8.9.10/token',
        'http://[::1]:8/token',
        'http://localhost:9/token',
      ]) {
        expect(isLoopbackUrl(u)).toBe(true);
      }
      for (const u of [
        'https://oauth2.example.com/token',
        'http://10.0.0.1/token',
        'http://128.0.0.1/',
        'http://[::2]/',
        'not a url',
      ]) {
        expect(isLoopbackUrl(u)).toBe(false);
      }
      expect(() =>
        createGmailTransport(configFor({}, { tokenUrl: 'https://token.attacker.example/token' }), { log }),
      ).toThrow(/google\.tokenUrl .* is not a loopback address/);
      expect(() => createGmailTransport(configFor({}, { rootUrl: 'http://gmail.attacker.example/' }), { log })).toThrow(
        /google\.rootUrl/,
      );
      expect(() =>
        createGmailTransport(configFor({}, { tokenUrl: 'http://localhost:1/token' }), { log }),
      ).not.toThrow();
    });

    it('names the field when the service account key is missing or not a key', async () => {
      expect(() => createGmailTransport(configFor({}, {}, join(dir, 'missing.json')), { log })).toThrow(
        /paths\.gmailServiceAccount/,
      );
      const bogus = join(dir, 'bogus.json');
      await writeFile(bogus, JSON.stringify({ type: 'authorized_user' }));
      expect(() => createGmailTransport(configFor({}, {}, bogus), { log })).toThrow(/not a service account JSON key/);
    });

    it("reads Gmail's Retry-After forms", () => {
      const now = Date.parse('2026-11-24T10:00:00.000Z');
      expect(retryAfterFrom('7', '', now)).toBe(7000);
      expect(retryAfterFrom(undefined, 'User-rate limit exceeded.  Retry after 2026-11-24T10:00:42.500Z', now)).toBe(
        42_500,
      );
      expect(retryAfterFrom(undefined, 'Backend Error', now)).toBeUndefined();
    });
  });

  it('imports into the mapped mailboxes with the labels, date header and neverMarkSpam', async () => {
    const t = transport({ labelIds: ['INBOX', 'UNREAD', 'IMPORTANT'], neverMarkSpam: true });
    const { message, raw } = await spool({ to: ['alice@corp.example.com', 'ceo@corp.example.com'] });
    const outcomes = await t.deliver(message, message.rcptTo);
    expect(outcomes).toEqual([
      { recipient: 'alice@corp.example.com', status: 'delivered', detail: expect.stringMatching(/^[0-9a-f]{16}$/) },
      { recipient: 'ceo@corp.example.com', status: 'delivered', detail: expect.stringMatching(/^[0-9a-f]{16}$/) },
    ]);
    const [a] = copiesOf(ALICE, message.messageId!);
    const [c] = copiesOf(CAROL, message.messageId!);
    expect(a).toMatchObject({
      id: outcomes[0]!.detail,
      labelIds: ['INBOX', 'UNREAD', 'IMPORTANT'],
      internalDateSource: 'dateHeader',
      internalDate: Date.parse('2026-11-24T10:00:00Z'),
      neverMarkSpam: true,
      processForCalendar: false,
      uploadType: 'multipart',
    });
    expect(a!.raw.equals(raw)).toBe(true);
    expect(c).toMatchObject({ id: outcomes[1]!.detail, labelIds: ['INBOX', 'UNREAD', 'IMPORTANT'] });
    expect(copiesOf(BOB, message.messageId!)).toHaveLength(0);
  });

  it('uses a user label and a media upload when the spec has no labels', async () => {
    const withLabel = transport({ labelIds: ['INBOX', label] });
    const one = await spool();
    expect((await withLabel.deliver(one.message, one.message.rcptTo))[0]!.status).toBe('delivered');
    expect(copiesOf(ALICE, one.message.messageId!)[0]).toMatchObject({ labelIds: ['INBOX', label], neverMarkSpam: false }); // Gmail's spam filter on unless set
    const noLabels = transport({ labelIds: [], neverMarkSpam: false, processForCalendar: true });
    const two = await spool();
    expect((await noLabels.deliver(two.message, two.message.rcptTo))[0]!.status).toBe('delivered');
    expect(copiesOf(ALICE, two.message.messageId!)[0]).toMatchObject({
      labelIds: [],
      uploadType: 'media',
      neverMarkSpam: false,
      processForCalendar: true,
    });
  });

  it('imports once for recipients that map to the same mailbox', async () => {
    const t = transport();
    const to = ['alice@corp.example.com', 'Alice@CORP.example.com', 'alice@corp.example.org', 'bob@corp.example.com'];
    const { message } = await spool({ to });
    const calls = gmailCalls();
    const outcomes = await t.deliver(message, to);
    expect(outcomes.map((o) => o.status)).toEqual(['delivered', 'delivered', 'delivered', 'delivered']);
    expect(new Set(outcomes.slice(0, 3).map((o) => o.detail)).size).toBe(1);
    expect(copiesOf(ALICE, message.messageId!)).toHaveLength(1);
    expect(copiesOf(BOB, message.messageId!)).toHaveLength(1);
    expect(gmailCalls() - calls).toBe(2);
  });

  it('streams a large message intact', async () => {
    const t = transport();
    const body = Array.from({ length: 60_000 }, (_, i) => `line ${i} ${'x'.repeat(60)}`).join('\r\n');
    const { message, raw } = await spool({ body });
    expect(raw.length).toBeGreaterThan(4_000_000);
    expect((await t.deliver(message, message.rcptTo))[0]!.status).toBe('delivered');
    expect(copiesOf(ALICE, message.messageId!)[0]!.raw.equals(raw)).toBe(true);
  });

  it('reuses one token per mailbox until it expires', async () => {
    const user = 'tokens@corp.example.org';
    emu.addUser(user);
    const t = transport();
    for (let i = 0; i < 3; i++) {
      const { message } = await spool({ to: [user] });
      expect((await t.deliver(message, [user]))[0]!.status).toBe('delivered');
    }
    expect(emu.tokensIssued(user)).toBe(1);
  });

  it('defers during a 429 storm with retryAfterMs, then delivers once without duplicates', async () => {
    const t = transport();
    const { message } = await spool();
    // Fetch the token first, so the storm window is spent on the import alone.
    expect(await t.checkBackupReachable('alice@corp.example.com')).toMatchObject({ reachable: true });
    emu.rateLimitStorm(2_000);
    const first = await t.deliver(message, message.rcptTo);
    expect(first[0]).toMatchObject({
      status: 'deferred',
      detail: expect.stringMatching(/^Gmail 429 rateLimitExceeded: User-rate limit exceeded/),
    });
    const retryAfterMs = (first[0] as Extract<RecipientOutcome, { status: 'deferred' }>).retryAfterMs!;
    expect(retryAfterMs).toBeGreaterThan(0);
    expect(retryAfterMs).toBeLessThanOrEqual(2_000);
    // While Google said to wait, the transport does not call it again.
    const calls = gmailCalls();
    const second = await t.deliver(message, message.rcptTo);
    expect(second[0]).toMatchObject({ status: 'deferred', retryAfterMs: expect.any(Number) });
    expect(gmailCalls()).toBe(calls);
    const retryAt = Date.now() + (second[0] as { retryAfterMs: number }).retryAfterMs;
    await waitFor(() => Date.now() >= retryAt, 10_000, 'the retry time Gmail gave');
    const third = await t.deliver(message, message.rcptTo);
    expect(third[0]).toMatchObject({ status: 'delivered' });
    expect(copiesOf(ALICE, message.messageId!)).toHaveLength(1);
    expect(await t.alreadyDelivered!(message, 'alice@corp.example.com')).toBe(true);
  });

  it("reads the retry time from Gmail's quota 429", async () => {
    const user = 'quota@corp.example.org';
    emu.addUser(user);
    const t = transport();
    emu.quotaPerMinute = 50; // two imports
    try {
      for (let i = 0; i < 2; i++) {
        const { message } = await spool({ to: [user] });
        expect((await t.deliver(message, [user]))[0]!.status).toBe('delivered');
      }
      const { message } = await spool({ to: [user] });
      const [o] = await t.deliver(message, [user]);
      expect(o).toMatchObject({ status: 'deferred' });
      const ms = (o as { retryAfterMs: number }).retryAfterMs;
      expect(ms).toBeGreaterThan(30_000); // the first import leaves the window a minute after it was made
      expect(ms).toBeLessThanOrEqual(60_000);
      expect(copiesOf(user, message.messageId!)).toHaveLength(0);
    } finally {
      emu.quotaPerMinute = 15_000;
    }
  });

  it('paces each mailbox below the quota without calling Google', async () => {
    const t = transport({}, { pacing: { unitsPerMinute: 60, burstUnits: 50 } });
    const results: RecipientOutcome[] = [];
    const calls = gmailCalls();
    for (let i = 0; i < 3; i++) {
      const { message } = await spool({ to: ['bob@corp.example.com'] });
      results.push(...(await t.deliver(message, message.rcptTo)));
    }
    expect(results.map((r) => r.status)).toEqual(['delivered', 'delivered', 'deferred']);
    expect(results[2]).toMatchObject({ detail: expect.stringMatching(/^pacing bob@corp.example.org/) });
    const wait = (results[2] as { retryAfterMs: number }).retryAfterMs;
    expect(wait).toBeGreaterThan(10_000); // 25 units at 60 units/min, less what refilled meanwhile
    expect(wait).toBeLessThanOrEqual(25_000);
    expect(gmailCalls() - calls).toBe(2);
    // Another mailbox has its own bucket.
    const { message } = await spool({ to: ['alice@corp.example.com'] });
    expect((await t.deliver(message, message.rcptTo))[0]!.status).toBe('delivered');
  });

  it('defers on 500, 503 and dropped connections, with a backoff hint', async () => {
    const t = transport({}, { backoff: { baseMs: 2_000, maxMs: 60_000 } });
    // A fresh message each time, so that each failure hits the import itself
    // (a retry of the same message first searches for it: see the next test).
    const m = [await spool(), await spool(), await spool()].map((x) => x.message);
    const imports = () => emu.requests.filter((r) => r.path.endsWith('/messages/import')).length;
    const before = imports();
    emu.failNext(1, 503);
    const [a] = await t.deliver(m[0]!, m[0]!.rcptTo);
    expect(a).toEqual({
      recipient: 'alice@corp.example.com',
      status: 'deferred',
      detail: 'Gmail 503 backendError: The service is currently unavailable.',
      retryAfterMs: 2_000,
    });
    emu.failNext(1, 500);
    const [b] = await t.deliver(m[1]!, m[1]!.rcptTo);
    expect(b).toMatchObject({ status: 'deferred', detail: expect.stringMatching(/^Gmail 500/), retryAfterMs: 4_000 });
    emu.dropNext(1);
    const [c] = await t.deliver(m[2]!, m[2]!.rcptTo);
    expect(c).toMatchObject({
      status: 'deferred',
      detail: expect.stringMatching(/^Google unreachable/),
      retryAfterMs: 8_000,
    });
    expect(imports() - before).toBe(3);
    for (const msg of m) {
      expect((await t.deliver(msg, msg.rcptTo))[0]).toMatchObject({ status: 'delivered' });
      expect(copiesOf(ALICE, msg.messageId!)).toHaveLength(1);
    }
  });

  it('after an import with an unknown outcome, looks for the message before importing again', async () => {
    const t = transport();
    const { message } = await spool();
    emu.failAfterImportNext(1, 503); // Gmail stores it but answers 503
    const [a] = await t.deliver(message, message.rcptTo);
    expect(a).toMatchObject({ status: 'deferred' });
    const stored = copiesOf(ALICE, message.messageId!);
    expect(stored).toHaveLength(1);
    const imports = () => emu.requests.filter((r) => r.path.endsWith('/messages/import')).length;
    const before = imports();
    const [b] = await t.deliver(message, message.rcptTo);
    expect(b).toEqual({ recipient: 'alice@corp.example.com', status: 'delivered', detail: stored[0]!.id });
    expect(imports()).toBe(before);
    expect(copiesOf(ALICE, message.messageId!)).toHaveLength(1);
  });

  it('defers when Google does not answer within the request timeout', async () => {
    const t = transport({}, { timeouts: { baseMs: 1_000 } });
    const { message } = await spool();
    expect(await t.checkBackupReachable('alice@corp.example.com')).toMatchObject({ reachable: true });
    emu.stallNext(1);
    const started = Date.now();
    const [a] = await t.deliver(message, message.rcptTo);
    expect(a).toMatchObject({ status: 'deferred', detail: expect.stringMatching(/^Google unreachable/) });
    expect(Date.now() - started).toBeLessThan(30_000);
    // The stalled request never reached the mailbox: the next attempt looks, finds nothing, imports.
    expect((await t.deliver(message, message.rcptTo))[0]).toMatchObject({ status: 'delivered' });
    expect(copiesOf(ALICE, message.messageId!)).toHaveLength(1);
  });

  it('defers when the token endpoint fails, without retrying behind the scheduler', async () => {
    const user = 'token-5xx@corp.example.org';
    emu.addUser(user);
    const t = transport();
    const { message } = await spool({ to: [user] });
    const tokenCalls = () => emu.requests.filter((r) => r.path === '/token').length;
    const before = tokenCalls();
    emu.failTokenNext(1, 503);
    const [a] = await t.deliver(message, [user]);
    expect(a).toMatchObject({ status: 'deferred', detail: expect.stringMatching(/^Google token endpoint 503/) });
    expect(tokenCalls() - before).toBe(1);
    const [b] = await t.deliver(message, [user]);
    expect(b).toMatchObject({ status: 'delivered' });
    expect(copiesOf(user, message.messageId!)).toHaveLength(1);
  });

  it('treats 403 quota reasons as deferrals and other 403s as failures', () => {
    const err = (status: number, reason: string, message: string) => ({
      message,
      response: {
        status,
        headers: new Headers(),
        data: { error: { code: status, message, errors: [{ reason, message }] } },
      },
    });
    const now = Date.parse('2026-11-24T10:00:00Z');
    expect(
      classifyGoogleError(err(403, 'userRateLimitExceeded', 'User Rate Limit Exceeded'), ALICE, now),
    ).toMatchObject({
      kind: 'deferred',
      rateLimited: true,
    });
    expect(classifyGoogleError(err(403, 'dailyLimitExceeded', 'Daily Limit Exceeded'), ALICE, now)).toMatchObject({
      kind: 'deferred',
    });
    expect(classifyGoogleError(err(403, 'forbidden', `Delegation denied for ${ALICE}`), ALICE, now)).toEqual({
      kind: 'failed',
      detail: `Gmail 403 forbidden: Delegation denied for ${ALICE}`,
      rateLimited: false,
      authRejected: false,
    });
    expect(classifyGoogleError(err(404, 'notFound', 'Requested entity was not found.'), ALICE, now).kind).toBe(
      'failed',
    );
    const withHeader = {
      message: 'x',
      response: { status: 503, headers: new Headers({ 'retry-after': '30' }), data: { error: { message: 'x' } } },
    };
    expect(classifyGoogleError(withHeader, ALICE, now)).toMatchObject({ kind: 'deferred', retryAfterMs: 30_000 });
  });

  it('fails permanently on 400 with Google’s message: not RFC 5322, unknown label, unknown user', async () => {
    const t = transport();
    const garbage = await spool({ raw: Buffer.from('this line is not a header\r\n\r\nbody\r\n') });
    const [a] = await t.deliver(garbage.message, garbage.message.rcptTo);
    expect(a).toMatchObject({
      status: 'failed',
      detail: expect.stringMatching(/^Gmail 400 invalidArgument: Invalid RFC 5322 message/),
    });

    const badLabel = transport({ labelIds: ['INBOX', 'Label_404'] });
    const m = await spool();
    const [b] = await badLabel.deliver(m.message, m.message.rcptTo);
    expect(b).toEqual({
      recipient: 'alice@corp.example.com',
      status: 'failed',
      detail: 'Gmail 400 invalidArgument: Invalid label: Label_404',
    });

    const [c] = await t.deliver(m.message, ['nobody@corp.example.com']);
    expect(c).toMatchObject({
      status: 'failed',
      detail: expect.stringMatching(/no Workspace user nobody@corp.example.org/),
    });
    expect(copiesOf(ALICE, m.message.messageId!)).toHaveLength(0);
  });

  it('fails a missing or oversized spool file without calling Google', async () => {
    const t = transport();
    const { message } = await spool();
    const calls = gmailCalls();
    const size = 150 * 1024 * 1024 + 1;
    await truncate(message.path, size); // sparse: no 150 MB written
    const [a] = await t.deliver({ ...message, size }, message.rcptTo);
    expect(a).toMatchObject({ status: 'failed', detail: expect.stringMatching(/exceeds Gmail's import limit/) });
    const [b] = await t.deliver({ ...message, path: join(dir, 'gone.eml') }, message.rcptTo);
    expect(b).toMatchObject({ status: 'failed', detail: expect.stringMatching(/unreadable/) });
    expect(gmailCalls()).toBe(calls);
  });

  it('defers when the delivery is aborted', async () => {
    const t = transport();
    const { message } = await spool();
    const ac = new AbortController();
    ac.abort();
    const [a] = await t.deliver(message, message.rcptTo, ac.signal);
    expect(a).toMatchObject({ status: 'deferred' });
    expect(copiesOf(ALICE, message.messageId!)).toHaveLength(0);
  });

  it('alreadyDelivered: false before the import, true after, false without a Message-ID', async () => {
    const t = transport();
    const { message } = await spool({ to: ['ceo@corp.example.com'] });
    expect(await t.alreadyDelivered!(message, 'ceo@corp.example.com')).toBe(false);
    expect((await t.deliver(message, message.rcptTo))[0]!.status).toBe('delivered');
    expect(await t.alreadyDelivered!(message, 'ceo@corp.example.com')).toBe(true);
    expect(await t.alreadyDelivered!(message, 'bob@corp.example.com')).toBe(false);
    const { message: noId } = await spool({ messageId: null });
    const calls = gmailCalls();
    expect(await t.alreadyDelivered!(noId, 'alice@corp.example.com')).toBe(false);
    expect(gmailCalls()).toBe(calls);
  });

  it.each([
    ['a OR in:anywhere', false],
    ['x@y OR in:anywhere', false],
    ['"a" OR in:anywhere', false],
    ['{a in:anywhere}', false],
    ['a}OR{in:anywhere@x', true],
    ['-in:anywhere@x', true],
    ['a)OR(in:anywhere@x', true],
  ])('alreadyDelivered with the hostile Message-ID <%s>: no false "found" (searchable: %s)', async (hostile, searchable) => {
    const t = transport();
    const { message: other } = await spool();
    expect((await t.deliver(other, other.rcptTo))[0]!.status).toBe('delivered');
    const stored = copiesOf(ALICE, other.messageId!)[0]!;
    // What the unescaped query did: at Gmail (and in the emulator) it selects messages that are not this one.
    if (hostile.endsWith('OR in:anywhere')) expect(matchesQuery(parseQuery(`rfc822msgid:${hostile}`), stored)).toBe(true);
    const { message } = await spool({ messageId: hostile });
    expect(await t.alreadyDelivered!(message, 'alice@corp.example.com')).toBe(false);
    expect((await t.deliver(message, message.rcptTo))[0]!.status).toBe('delivered');
    // Once imported, a searchable ID is found; one Gmail cannot quote is "cannot tell" (a duplicate at worst).
    expect(await t.alreadyDelivered!(message, 'alice@corp.example.com')).toBe(searchable);
  });

  it('alreadyDelivered answers false when gmail.readonly is not delegated, and imports still work', async () => {
    const sa = emu.addServiceAccount({ delegatedScopes: [SCOPES.insert] });
    const saFile = join(dir, 'insert-only.json');
    await writeFile(saFile, sa.keyJson);
    const t = transport({}, {}, saFile);
    const { message } = await spool();
    expect((await t.deliver(message, message.rcptTo))[0]!.status).toBe('delivered');
    expect(await t.alreadyDelivered!(message, 'alice@corp.example.com')).toBe(false);
    const lastToken = emu.requests.filter((r) => r.path === '/token').at(-1);
    expect(lastToken?.status).toBe(401); // unauthorized_client for gmail.readonly
  });

  it('checkBackupReachable: a token for a user, or the reason there is none', async () => {
    const t = transport();
    expect(await t.checkBackupReachable('alice@corp.example.com')).toMatchObject({
      reachable: true,
      reason: 'TokenGranted',
    });
    expect(await t.checkBackupReachable('nobody@corp.example.com')).toMatchObject({
      reachable: false,
      reason: 'UnknownUser',
    });
    const sa = emu.addServiceAccount({ delegatedScopes: [SCOPES.readonly] });
    const saFile = join(dir, 'no-insert.json');
    await writeFile(saFile, sa.keyJson);
    const noDelegation = transport({}, {}, saFile);
    const r = await noDelegation.checkBackupReachable(ALICE);
    expect(r).toMatchObject({
      reachable: false,
      reason: 'DelegationMissing',
      message: expect.stringMatching(/domain-wide delegation/),
    });
    expect(await checkBackupReachable(configFor(), { log }, 'bob@corp.example.com')).toMatchObject({ reachable: true });
    const { message } = await spool();
    const [o] = await noDelegation.deliver(message, message.rcptTo);
    expect(o).toMatchObject({ status: 'deferred', detail: expect.stringMatching(/unauthorized_client/) });
  });
});
