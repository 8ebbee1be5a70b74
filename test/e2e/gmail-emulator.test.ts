// The Gmail emulator must be as strict as Google: a test that passes against
// it should not fail against the real service for a reason the emulator could
// have checked. Grants are real RS256 JWTs (node:crypto and google-auth-library).
import { spawn } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { JWT } from 'google-auth-library';
import { GOOGLE_TOKEN_URL, SCOPES, startGmailEmulator, type GmailEmulator } from '../harness/gmail-emulator.js';

jest.setTimeout(60_000);

const ALICE = 'alice@corp.example.org';
const BOB = 'bob@corp.example.org';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

function signJwt(
  claims: Record<string, unknown>,
  privateKeyPem: string,
  header: Record<string, unknown> = { alg: 'RS256', typ: 'JWT' },
) {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${sign('RSA-SHA256', Buffer.from(input), privateKeyPem).toString('base64url')}`;
}

const message = (id: string, extra = '') =>
  Buffer.from(
    `From: Sender <sender@example.net>\r\nTo: alice@corp.example.org\r\nSubject: test ${id}\r\n` +
      `Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${id}@example.net>\r\n${extra}\r\nHello ${id}.\r\n`,
  );

function multipart(meta: unknown, raw: Buffer, mediaType = 'message/rfc822', boundary = 'b0undary-xyz'): Buffer {
  return Buffer.concat([
    Buffer.from(`--${boundary}\r\ncontent-type: application/json\r\n\r\n${JSON.stringify(meta)}\r\n`),
    Buffer.from(`--${boundary}\r\ncontent-type: ${mediaType}\r\n\r\n`),
    raw,
    Buffer.from(`\r\n--${boundary}--`),
  ]);
}

describe('Gmail emulator', () => {
  let emu: GmailEmulator;
  let offset = 0;
  let key: GmailEmulator['serviceAccount']['key'];

  beforeAll(async () => {
    emu = await startGmailEmulator({ users: [ALICE, BOB], now: () => Date.now() + offset });
    key = emu.serviceAccount.key;
  });
  afterAll(async () => {
    await emu?.close();
  });

  const claimsFor = (over: Record<string, unknown> = {}) => {
    const iat = Math.floor(Date.now() / 1000);
    return {
      iss: key.client_email,
      scope: SCOPES.insert,
      aud: GOOGLE_TOKEN_URL,
      iat,
      exp: iat + 3600,
      sub: ALICE,
      ...over,
    };
  };

  async function postToken(assertion: string, grantType = JWT_BEARER) {
    const res = await fetch(emu.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: grantType, assertion }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  async function tokenFor(sub: string, scope: string = SCOPES.insert): Promise<string> {
    const { status, body } = await postToken(
      signJwt(claimsFor({ sub, scope }), key.private_key, { alg: 'RS256', typ: 'JWT', kid: key.private_key_id }),
    );
    expect(status).toBe(200);
    return body.access_token as string;
  }

  async function importRaw(
    token: string,
    userId: string,
    body: Buffer,
    query = 'uploadType=multipart',
    contentType = 'multipart/related; boundary=b0undary-xyz',
  ) {
    const res = await fetch(`${emu.url}/upload/gmail/v1/users/${encodeURIComponent(userId)}/messages/import?${query}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': contentType },
      body,
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  }

  describe('service account key', () => {
    it('is shaped like a key downloaded from the Cloud console', () => {
      expect(Object.keys(key).sort()).toEqual(
        [
          'auth_provider_x509_cert_url',
          'auth_uri',
          'client_email',
          'client_id',
          'client_x509_cert_url',
          'private_key',
          'private_key_id',
          'project_id',
          'token_uri',
          'type',
          'universe_domain',
        ].sort(),
      );
      expect(key.type).toBe('service_account');
      expect(key.token_uri).toBe('https://oauth2.googleapis.com/token');
      expect(key.private_key).toMatch(/^-----BEGIN PRIVATE KEY-----\n[\s\S]+\n-----END PRIVATE KEY-----\n$/);
      expect(key.private_key_id).toMatch(/^[0-9a-f]{40}$/);
      expect(key.client_email).toMatch(/^[a-z0-9-]+@[a-z0-9-]+\.iam\.gserviceaccount\.com$/);
      expect(key.client_id).toMatch(/^[0-9]{21}$/);
    });
  });

  describe('token endpoint', () => {
    it('grants a Bearer token for a well-signed JWT with domain-wide delegation', async () => {
      const { status, body } = await postToken(
        signJwt(claimsFor(), key.private_key, { alg: 'RS256', typ: 'JWT', kid: key.private_key_id }),
      );
      expect(status).toBe(200);
      expect(body).toEqual({ access_token: expect.stringMatching(/^ya29\./), expires_in: 3599, token_type: 'Bearer' });
    });

    it("accepts google-auth-library's own grant (no kid, Google's audience)", async () => {
      const client = new JWT({ email: key.client_email, key: key.private_key, scopes: [SCOPES.insert], subject: BOB });
      client.transporter.interceptors.request.add({
        resolved: async (opts) => {
          if (String(opts.url) === GOOGLE_TOKEN_URL) opts.url = new URL(emu.tokenUrl);
          return opts;
        },
      });
      const before = emu.tokensIssued(BOB);
      const { token } = await client.getAccessToken();
      expect(token).toMatch(/^ya29\./);
      expect(emu.tokensIssued(BOB)).toBe(before + 1);
    });

    it('refuses a JWT signed with another key: invalid_grant', async () => {
      const other = generateKeyPairSync('rsa', { modulusLength: 2048 })
        .privateKey.export({ type: 'pkcs8', format: 'pem' })
        .toString();
      const withKid = await postToken(signJwt(claimsFor(), other, { alg: 'RS256', kid: key.private_key_id }));
      expect(withKid).toEqual({
        status: 400,
        body: { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' },
      });
      const noKid = await postToken(signJwt(claimsFor(), other, { alg: 'RS256' }));
      expect(noKid.body.error).toBe('invalid_grant');
    });

    it('refuses a tampered payload, an unknown kid, alg none and a malformed assertion', async () => {
      const good = signJwt(claimsFor(), key.private_key);
      const [h, , s] = good.split('.');
      const tampered = `${h}.${b64(claimsFor({ sub: BOB }))}.${s}`;
      expect((await postToken(tampered)).body.error_description).toBe('Invalid JWT Signature.');
      expect(
        (await postToken(signJwt(claimsFor(), key.private_key, { alg: 'RS256', kid: 'f'.repeat(40) }))).status,
      ).toBe(400);
      const none = `${b64({ alg: 'none' })}.${b64(claimsFor())}.`;
      expect((await postToken(none)).body.error).toBe('invalid_grant');
      expect(await postToken('not-a-jwt')).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    });

    it('refuses an unknown issuer, a wrong audience and a wrong grant type', async () => {
      const unknown = await postToken(signJwt(claimsFor({ iss: 'nobody@x.iam.gserviceaccount.com' }), key.private_key));
      expect(unknown).toEqual({
        status: 400,
        body: { error: 'invalid_grant', error_description: 'Invalid grant: account not found' },
      });
      const aud = await postToken(signJwt(claimsFor({ aud: 'https://example.com/token' }), key.private_key));
      expect(aud.body).toMatchObject({ error: 'invalid_grant', error_description: expect.stringMatching(/audience/) });
      const own = await postToken(signJwt(claimsFor({ aud: emu.tokenUrl }), key.private_key));
      expect(own.status).toBe(200);
      const grant = await postToken(signJwt(claimsFor(), key.private_key), 'client_credentials');
      expect(grant).toEqual({
        status: 400,
        body: { error: 'unsupported_grant_type', error_description: 'Invalid grant_type: client_credentials' },
      });
    });

    it('refuses an expired JWT, one living longer than an hour, and one without iat', async () => {
      const now = Math.floor(Date.now() / 1000);
      for (const times of [
        { iat: now - 7200, exp: now - 3600 },
        { iat: now, exp: now + 3601 },
        { iat: undefined, exp: now + 600 },
      ]) {
        const res = await postToken(signJwt(claimsFor(times), key.private_key));
        expect(res.status).toBe(400);
        expect(res.body).toMatchObject({
          error: 'invalid_grant',
          error_description: expect.stringMatching(/^Invalid JWT: Token must be a short-lived token/),
        });
      }
    });

    it('refuses scopes the admin did not delegate, and an empty scope', async () => {
      const drive = await postToken(
        signJwt(claimsFor({ scope: 'https://www.googleapis.com/auth/drive' }), key.private_key),
      );
      expect(drive.status).toBe(401);
      expect(drive.body.error).toBe('unauthorized_client');
      const mixed = await postToken(signJwt(claimsFor({ scope: `${SCOPES.insert} ${SCOPES.full}` }), key.private_key));
      expect(mixed.body.error).toBe('unauthorized_client');
      const empty = await postToken(signJwt(claimsFor({ scope: '' }), key.private_key));
      expect(empty).toMatchObject({ status: 400, body: { error: 'invalid_scope' } });
    });

    it('refuses a subject that is not a Workspace user', async () => {
      const res = await postToken(signJwt(claimsFor({ sub: 'mallory@corp.example.org' }), key.private_key));
      expect(res).toEqual({
        status: 400,
        body: { error: 'invalid_grant', error_description: 'Invalid email or User ID' },
      });
    });
  });

  describe('users.messages.import', () => {
    it('stores a well-formed multipart import with its labels and parameters', async () => {
      const token = await tokenFor(ALICE);
      const label = emu.createLabel(ALICE, 'Continuity');
      const raw = message('stored');
      const res = await importRaw(
        token,
        ALICE,
        multipart({ labelIds: ['INBOX', 'UNREAD', label] }, raw),
        'uploadType=multipart&internalDateSource=dateHeader&neverMarkSpam=true&processForCalendar=false',
      );
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        id: expect.stringMatching(/^[0-9a-f]{16}$/),
        threadId: res.body.id,
        labelIds: ['INBOX', 'UNREAD', label],
      });
      const stored = emu.messages(ALICE).find((m) => m.id === res.body.id);
      expect(stored).toMatchObject({
        labelIds: ['INBOX', 'UNREAD', label],
        internalDateSource: 'dateHeader',
        internalDate: Date.parse('2026-11-24T10:00:00Z'),
        neverMarkSpam: true,
        processForCalendar: false,
        rfc822MessageId: 'stored@example.net',
        uploadType: 'multipart',
      });
      expect(stored!.raw.equals(raw)).toBe(true);
    });

    it('accepts a media upload (no metadata) with "me" as the user', async () => {
      const token = await tokenFor(ALICE);
      const raw = message('media');
      const res = await importRaw(token, 'me', raw, 'uploadType=media', 'message/rfc822');
      expect(res.status).toBe(200);
      const stored = emu.messages(ALICE).find((m) => m.id === res.body.id)!;
      expect(stored).toMatchObject({
        labelIds: [],
        internalDateSource: 'receivedTime',
        neverMarkSpam: false,
        uploadType: 'media',
      });
      expect(stored.raw.equals(raw)).toBe(true);
    });

    it('accepts the non-upload form with raw (base64url) in a JSON body', async () => {
      const token = await tokenFor(ALICE);
      const raw = message('json');
      const res = await fetch(`${emu.url}/gmail/v1/users/me/messages/import?internalDateSource=dateHeader`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ raw: raw.toString('base64url'), labelIds: ['INBOX'] }),
      });
      expect(res.status).toBe(200);
      const { id } = (await res.json()) as { id: string };
      const stored = emu.messages(ALICE).find((m) => m.id === id)!;
      expect(stored).toMatchObject({ uploadType: 'json', labelIds: ['INBOX'], internalDateSource: 'dateHeader' });
      expect(stored.raw.equals(raw)).toBe(true);
      const noRaw = await fetch(`${emu.url}/gmail/v1/users/me/messages/import`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ labelIds: ['INBOX'] }),
      });
      expect(noRaw.status).toBe(400);
    });

    it('answers 401 in Gmail shape without a valid token', async () => {
      const res = await importRaw('ya29.forged', ALICE, multipart({}, message('x')));
      expect(res.status).toBe(401);
      expect(res.body.error).toMatchObject({
        code: 401,
        status: 'UNAUTHENTICATED',
        errors: [{ reason: 'authError', domain: 'global' }],
      });
    });

    it("answers 403 when the token's user is not the userId", async () => {
      const token = await tokenFor(ALICE);
      const before = emu.messages(BOB).length;
      const res = await importRaw(token, BOB, multipart({}, message('wrong-user')));
      expect(res.status).toBe(403);
      expect(res.body.error).toMatchObject({
        code: 403,
        message: `Delegation denied for ${ALICE}`,
        status: 'PERMISSION_DENIED',
      });
      expect(emu.messages(BOB)).toHaveLength(before);
    });

    it('answers 403 insufficientPermissions to a token without an import scope', async () => {
      const token = await tokenFor(ALICE, SCOPES.readonly);
      const res = await importRaw(token, ALICE, multipart({}, message('readonly')));
      expect(res.status).toBe(403);
      expect(res.body.error.errors[0].reason).toBe('insufficientPermissions');
    });

    it('answers 401 once the token has expired', async () => {
      const token = await tokenFor(ALICE);
      offset = 3600_000;
      try {
        const res = await importRaw(token, ALICE, multipart({}, message('expired')));
        expect(res.status).toBe(401);
      } finally {
        offset = 0;
      }
    });

    it('answers 400 to malformed multipart bodies and wrong media types', async () => {
      const token = await tokenFor(ALICE);
      const before = emu.messages(ALICE).length;
      const good = multipart({}, message('m'));
      const cases: [Buffer, string, string][] = [
        [good.subarray(0, good.length - 20), 'multipart/related; boundary=b0undary-xyz', 'badRequest'], // no closing delimiter
        [good, 'multipart/related; boundary=other', 'badRequest'],
        [good, 'multipart/related', 'badRequest'],
        [
          Buffer.from('--b0undary-xyz\r\ncontent-type: application/json\r\n\r\n{}\r\n--b0undary-xyz--'),
          'multipart/related; boundary=b0undary-xyz',
          'badRequest',
        ],
        [
          Buffer.from(multipart('@@', message('m')).toString('latin1').replace('"@@"', '{not json'), 'latin1'),
          'multipart/related; boundary=b0undary-xyz',
          'parseError',
        ],
        [
          multipart({}, message('m'), 'application/octet-stream'),
          'multipart/related; boundary=b0undary-xyz',
          'badContent',
        ],
      ];
      for (const [body, ct, reason] of cases) {
        const res = await importRaw(token, ALICE, Buffer.from(body), 'uploadType=multipart', ct);
        expect({ status: res.status, reason: res.body.error?.errors?.[0]?.reason }).toEqual({ status: 400, reason });
      }
      const noType = await importRaw(token, ALICE, good, '');
      expect(noType.status).toBe(400);
      expect(emu.messages(ALICE)).toHaveLength(before);
    });

    it('answers 400 invalidArgument to a message that is not RFC 5322, and to unknown labels', async () => {
      const token = await tokenFor(ALICE);
      const before = emu.messages(ALICE).length;
      const notMail = await importRaw(
        token,
        ALICE,
        multipart({}, Buffer.from('this is not a mail message\r\n\r\nbody\r\n')),
      );
      expect(notMail.status).toBe(400);
      expect(notMail.body.error).toMatchObject({
        code: 400,
        status: 'INVALID_ARGUMENT',
        errors: [{ reason: 'invalidArgument' }],
      });
      const label = await importRaw(token, ALICE, multipart({ labelIds: ['INBOX', 'Label_999'] }, message('l')));
      expect(label.status).toBe(400);
      expect(label.body.error.message).toBe('Invalid label: Label_999');
      const bobsLabel = emu.createLabel(BOB, 'only-bob');
      expect((await importRaw(token, ALICE, multipart({ labelIds: [bobsLabel] }, message('l2')))).status).toBe(400);
      const badParam = await importRaw(
        token,
        ALICE,
        multipart({}, message('p')),
        'uploadType=multipart&internalDateSource=yesterday',
      );
      expect(badParam.status).toBe(400);
      expect(emu.messages(ALICE)).toHaveLength(before);
    });

    it('charges 25 units per import and answers 429 in Gmail shape over the per-user quota', async () => {
      const user = 'quota@corp.example.org';
      emu.addUser(user);
      const token = await tokenFor(user);
      emu.quotaPerMinute = 60; // two imports (50 units) fit, the third does not
      try {
        expect((await importRaw(token, user, multipart({}, message('q1')))).status).toBe(200);
        expect((await importRaw(token, user, multipart({}, message('q2')))).status).toBe(200);
        const t0 = Date.now();
        const res = await importRaw(token, user, multipart({}, message('q3')));
        expect(res.status).toBe(429);
        const error = res.body.error;
        expect(error).toEqual({
          code: 429,
          message: expect.stringMatching(
            /^User-rate limit exceeded\. {2}Retry after \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/,
          ),
          errors: [{ message: error.message, domain: 'usageLimits', reason: 'rateLimitExceeded' }],
          status: 'RESOURCE_EXHAUSTED',
        });
        const retryAt = Date.parse(error.message.split('Retry after ')[1]);
        expect(retryAt).toBeGreaterThan(t0 + 30_000); // a minute after the first import
        expect(retryAt).toBeLessThanOrEqual(Date.now() + 60_000);
        expect(emu.messages(user)).toHaveLength(2);
        // Other users have their own quota.
        expect((await importRaw(await tokenFor(BOB), BOB, multipart({}, message('other')))).status).toBe(200);
      } finally {
        emu.quotaPerMinute = 15_000;
      }
    });

    it('injects 500/503 failures, 429 storms and dropped connections on request', async () => {
      const token = await tokenFor(ALICE);
      emu.failNext(1, 500);
      const r500 = await importRaw(token, ALICE, multipart({}, message('f1')));
      expect(r500.status).toBe(500);
      expect(r500.body.error).toMatchObject({ status: 'INTERNAL', errors: [{ reason: 'backendError' }] });
      emu.failNext(1);
      expect((await importRaw(token, ALICE, multipart({}, message('f2')))).status).toBe(503);
      emu.rateLimitStorm(60_000);
      const storm = await importRaw(token, ALICE, multipart({}, message('f3')));
      expect(storm.status).toBe(429);
      emu.rateLimitStorm(0);
      emu.dropNext(1);
      await expect(importRaw(token, ALICE, multipart({}, message('f4')))).rejects.toThrow();
      const ok = await importRaw(token, ALICE, multipart({}, message('f5')));
      expect(ok.status).toBe(200);
      expect(
        emu
          .messages(ALICE)
          .filter((m) => /^f\d@/.test(m.rfc822MessageId ?? ''))
          .map((m) => m.rfc822MessageId),
      ).toEqual(['f5@example.net']);
    });
  });

  describe('users.messages.list', () => {
    const list = async (token: string, userId: string, q: string) => {
      const res = await fetch(
        `${emu.url}/gmail/v1/users/${encodeURIComponent(userId)}/messages?q=${encodeURIComponent(q)}`,
        {
          headers: { authorization: `Bearer ${token}` },
        },
      );
      return { status: res.status, body: (await res.json()) as Record<string, any> };
    };

    it('finds a message by rfc822msgid and answers resultSizeEstimate 0 otherwise', async () => {
      const insert = await tokenFor(ALICE);
      const imported = await importRaw(insert, ALICE, multipart({ labelIds: ['INBOX'] }, message('findme')));
      const read = await tokenFor(ALICE, SCOPES.readonly);
      expect(await list(read, ALICE, 'rfc822msgid:findme@example.net')).toEqual({
        status: 200,
        body: { messages: [{ id: imported.body.id, threadId: imported.body.threadId }], resultSizeEstimate: 1 },
      });
      expect(await list(read, 'me', 'rfc822msgid:<findme@example.net>')).toMatchObject({
        status: 200,
        body: { resultSizeEstimate: 1 },
      });
      expect(await list(read, ALICE, 'rfc822msgid:missing@example.net')).toEqual({
        status: 200,
        body: { resultSizeEstimate: 0 },
      });
      expect((await list(read, BOB, 'rfc822msgid:findme@example.net')).status).toBe(403);
    });

    it('refuses a list with an insert-only token (gmail.insert cannot read)', async () => {
      const insert = await tokenFor(ALICE);
      const res = await list(insert, ALICE, 'rfc822msgid:findme@example.net');
      expect(res.status).toBe(403);
      expect(res.body.error.errors[0].reason).toBe('insufficientPermissions');
    });
  });

  it('runs as a process for make demo: JSON line when ready, key file, SIGTERM closes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gmail-emu-main-'));
    const keyFile = join(dir, 'sa.json');
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'test/harness/gmail-emulator-main.ts',
        '--port',
        '0',
        '--users',
        `${ALICE},${BOB}`,
        '--key-out',
        keyFile,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      const line = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no ready line within 45 s')), 45_000);
        createInterface({ input: child.stdout! }).once('line', (l) => {
          clearTimeout(timer);
          resolve(l);
        });
        child.once('exit', (code) => reject(new Error(`emulator exited with ${code}`)));
      });
      const ready = JSON.parse(line) as {
        url: string;
        tokenUrl: string;
        rootUrl: string;
        keyFile: string;
        users: string[];
      };
      expect(ready).toMatchObject({
        keyFile,
        users: [ALICE, BOB],
        tokenUrl: `${ready.url}/token`,
        rootUrl: `${ready.url}/`,
      });
      const saved = JSON.parse(await readFile(keyFile, 'utf8')) as { client_email: string; private_key: string };
      const iat = Math.floor(Date.now() / 1000);
      const assertion = signJwt(
        { iss: saved.client_email, scope: SCOPES.insert, aud: GOOGLE_TOKEN_URL, iat, exp: iat + 600, sub: BOB },
        saved.private_key,
      );
      const res = await fetch(ready.tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: JWT_BEARER, assertion }),
      });
      expect(res.status).toBe(200);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
