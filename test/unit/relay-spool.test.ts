import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { createHash } from 'node:crypto';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { runQueue } from '../../src/relay/spool/queue-cli.js';
import { readSpoolDir } from '../../src/relay/spool/read.js';
import { Spool, type SpoolOptions } from '../../src/relay/spool/spool.js';
import type { MessageState } from '../../src/relay/spool/state.js';

const log = pino({ level: 'silent' });
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-spool-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function put(spool: Spool, body: string, rcpts = ['a@corp.example.com']): Promise<MessageState> {
  const w = await spool.create();
  await w.write(Buffer.from(body));
  const { state } = await w.commit({
    mailFrom: 's@partner.example.net',
    rcptTo: rcpts,
    messageId: `${w.id}@test`,
    receivedAt: Date.now(),
    client: { address: '127.0.0.1', helo: 'x' },
    headers: [],
    deliveries: { primary: { recipients: Object.fromEntries(rcpts.map((r) => [r, { status: 'pending' as const }])), attempts: 0, nextAttemptAt: 0 } },
  });
  return state;
}

/** A spool on `dir` as a relay opens it at start (init, then load). */
async function openSpool(opts: Partial<SpoolOptions> = {}): Promise<{ spool: Spool; loaded: MessageState[] }> {
  const spool = new Spool(dir, { log, ...opts });
  await spool.init();
  const loaded = await spool.load();
  return { spool, loaded };
}

describe('spool', () => {
  it('commits one file per message: the message bytes, then the envelope trailer; size and sha256 of the message', async () => {
    const spool = new Spool(dir, { log });
    await spool.init();
    const text = 'Subject: x\r\n\r\nhello\r\n';
    const state = await put(spool, text);
    expect(await readdir(join(dir, 'queue'))).toEqual([`${state.id}.msg`]);
    expect(state.size).toBe(Buffer.byteLength(text));
    expect(state.sha256).toBe(createHash('sha256').update(text).digest('hex'));
    const file = await readFile(join(dir, 'queue', `${state.id}.msg`), 'utf8');
    expect(file.slice(0, state.size)).toBe(text);
    const [envelope, end, last] = file.slice(state.size).split('\n');
    expect(JSON.parse(envelope!.replace(/^#envelope /, ''))).toEqual(state);
    expect(end).toBe(`#end ${state.size}`);
    expect(last).toBe('');
    expect(spool.bytes).toBe(state.size);
  });

  it('keeps small bodies in memory within the budget, and releases them', async () => {
    const spool = new Spool(dir, { log, bodyCacheBytes: 10 });
    await spool.init();
    const w = await spool.create();
    await w.write(Buffer.from('12345678\r\n'));
    const { message } = await w.commit({ mailFrom: '', rcptTo: ['a@corp.example.com'], receivedAt: 1, client: { address: '127.0.0.1', helo: 'x' }, headers: [], deliveries: {} });
    expect(message.body?.toString()).toBe('12345678\r\n');
    expect(spool.cachedBytes).toBe(10);
    const w2 = await spool.create();
    await w2.write(Buffer.from('over budget\r\n'));
    const second = await w2.commit({ mailFrom: '', rcptTo: ['a@corp.example.com'], receivedAt: 1, client: { address: '127.0.0.1', helo: 'x' }, headers: [], deliveries: {} });
    expect(second.message.body).toBeUndefined();
    spool.releaseBody(message);
    expect(message.body).toBeUndefined();
    expect(spool.cachedBytes).toBe(0);
  });

  it('streams a large message to the file as it arrives and still finds its trailer', async () => {
    const spool = new Spool(dir, { log });
    await spool.init();
    const w = await spool.create();
    const chunk = Buffer.from(`${'x'.repeat(998)}\r\n`);
    for (let i = 0; i < 600; i++) await w.write(chunk); // 600 KB: above the in-memory threshold
    expect((await stat(w.path)).size).toBeGreaterThan(0);
    const { state, message } = await w.commit({ mailFrom: '', rcptTo: ['a@corp.example.com'], receivedAt: 1, client: { address: '127.0.0.1', helo: 'x' }, headers: [], deliveries: {} });
    expect(message.body).toBeUndefined();
    expect(state.size).toBe(600 * 1000);
    const { loaded } = await openSpool();
    expect(loaded.map((s) => s.id)).toEqual([state.id]);
    expect(createHash('sha256').update((await readFile(join(dir, 'queue', `${state.id}.msg`))).subarray(0, state.size)).digest('hex')).toBe(state.sha256);
  });

  it('group-commits concurrent messages: fewer directory fsyncs than messages', async () => {
    const spool = new Spool(dir, { log });
    await spool.init();
    const states = await Promise.all(Array.from({ length: 40 }, (_, i) => put(spool, `m${i}\r\n`)));
    expect(new Set(states.map((s) => s.id)).size).toBe(40);
    expect(spool.dirSyncBatches).toBeGreaterThan(0);
    expect(spool.dirSyncBatches).toBeLessThan(40);
  });

  it('ids sort by arrival', async () => {
    const spool = new Spool(dir, { log });
    await spool.init();
    const ids = Array.from({ length: 100 }, () => spool.newId());
    expect([...ids].sort()).toEqual(ids);
  });

  it('delivery progress goes to the journal; load() resumes it; remove() and moveToDead() leave the queue', async () => {
    const { spool } = await openSpool();
    const a = await put(spool, 'a\r\n', ['x@corp.example.com', 'y@corp.example.com']);
    const b = await put(spool, 'b\r\n');
    const c = await put(spool, 'c\r\n');
    a.deliveries.primary!.recipients['x@corp.example.com'] = { status: 'delivered', at: 1 };
    a.deliveries.primary!.attempts = 1;
    a.deliveries.backup = { recipients: { 'x@corp.example.com': { status: 'excluded', rule: 'confidential' } }, attempts: 0, nextAttemptAt: 0 };
    await spool.saveState(a);
    await spool.remove(b);
    await spool.moveToDead(c, 'rejected');
    expect(await readSpoolDir(dir, 'queue')).toEqual([a]);
    await spool.close();

    const { spool: again, loaded } = await openSpool();
    expect(loaded).toEqual([a]);
    expect(again.bytes).toBe(3);
    expect((await readdir(join(dir, 'dead'))).sort()).toEqual([`${c.id}.eml`, `${c.id}.json`]);
    expect(await readFile(join(dir, 'dead', `${c.id}.eml`), 'utf8')).toBe('c\r\n');
    const dead = JSON.parse(await readFile(join(dir, 'dead', `${c.id}.json`), 'utf8')) as MessageState;
    expect(dead.dead?.reason).toBe('rejected');
    // The journal was folded into one line per message at start.
    expect((await readFile(join(dir, 'journal.log'), 'utf8')).trim().split('\n')).toHaveLength(1);
    await again.close();
  });

  it('compacts the journal when it grows: one line per live message, nothing lost', async () => {
    const { spool } = await openSpool({ journalMaxBytes: 2048 });
    const states = await Promise.all(Array.from({ length: 5 }, (_, i) => put(spool, `m${i}\r\n`)));
    const live = new Map(states.map((s) => [s.id, s]));
    spool.journal.setLive(() => live.values());
    for (let round = 1; round <= 40; round++) {
      const saved: Array<Promise<void>> = [];
      for (const s of live.values()) {
        s.deliveries.primary!.attempts = round;
        s.deliveries.primary!.lastError = `421 try later (round ${round})`;
        saved.push(spool.saveState(s));
      }
      await Promise.all(saved);
      if (round === 20) live.delete(states[0]!.id);
    }
    await spool.close();
    // 40 rounds of 5 lines (~37 KB written in all): compacted whenever it passed 2 KiB.
    expect(spool.journal.compactions).toBeGreaterThan(5);
    expect((await stat(join(dir, 'journal.log'))).size).toBeLessThan(4096);
    const { loaded, spool: again } = await openSpool();
    // states[0] left the live set but its file is still there (not removed): its last saved progress stands.
    expect(loaded.find((s) => s.id === states[1]!.id)!.deliveries.primary!.attempts).toBe(40);
    expect(loaded).toHaveLength(5);
    await again.close();
  });

  it('a queue whose snapshot alone is larger than journalMaxBytes is not compacted on every write', async () => {
    const { spool } = await openSpool({ journalMaxBytes: 1024 });
    const states = await Promise.all(Array.from({ length: 40 }, (_, i) => put(spool, `m${i}\r\n`)));
    spool.journal.setLive(() => states.values());
    for (let round = 1; round <= 30; round++) {
      const s = states[round % states.length]!;
      s.deliveries.primary!.attempts = round;
      await spool.saveState(s);
    }
    // 40 lines of ~170 bytes are past 1 KiB: one compaction, then the file must double first.
    expect(spool.journal.compactions).toBe(1);
    await spool.close();
    const { loaded, spool: again } = await openSpool();
    expect(loaded.find((s) => s.id === states[30 % 40]!.id)!.deliveries.primary!.attempts).toBe(30);
    await again.close();
  });

  it('at start: removes files without a valid trailer (never acknowledged), keeps complete ones', async () => {
    const spool = new Spool(dir, { log });
    await spool.init();
    const a = await put(spool, 'a\r\n');
    const b = await put(spool, 'b\r\n');
    const c = await put(spool, 'c\r\n');
    await writeFile(join(dir, 'queue', '0000000000000000000000.msg'), 'Subject: half a message\r\n');
    const bPath = join(dir, 'queue', `${b.id}.msg`);
    await truncate(bPath, (await stat(bPath)).size - 3); // torn trailer
    await appendFile(join(dir, 'queue', `${c.id}.msg`), 'x'); // bytes after the end line
    const { loaded, spool: again } = await openSpool();
    expect(loaded.map((s) => s.id)).toEqual([a.id]);
    expect(await readdir(join(dir, 'queue'))).toEqual([`${a.id}.msg`]);
    await again.close();
  });

  it('an aborted message leaves nothing behind', async () => {
    const spool = new Spool(dir, { log });
    await spool.init();
    const w = await spool.create();
    await w.write(Buffer.from('partial'));
    await w.abort();
    expect(await readdir(join(dir, 'queue'))).toEqual([]);
  });

  it('an attempt journaled but never recorded in the state comes back as in flight after a restart, and once more if that run stops too', async () => {
    const { spool } = await openSpool();
    const a = await put(spool, 'a\r\n');
    const b = await put(spool, 'b\r\n');
    await spool.journal.attempt(a.id, 'primary', 1);
    await spool.journal.attempt(b.id, 'primary', 1);
    b.deliveries.primary!.attempts = 1; // b's outcome was recorded
    spool.journal.finished(b.id, 'primary');
    await spool.saveState(b);
    await spool.close();
    const second = await openSpool();
    expect(second.loaded.find((s) => s.id === a.id)!.deliveries.primary!.inFlightSince).toBe(a.receivedAt);
    expect(second.loaded.find((s) => s.id === b.id)!.deliveries.primary!.inFlightSince).toBeUndefined();
    await second.spool.close();
    // The second run stopped before it handled a's unknown attempt: the third still knows.
    const third = await openSpool();
    expect(third.loaded.find((s) => s.id === a.id)!.deliveries.primary!.inFlightSince).toBe(a.receivedAt);
    await third.spool.close();
  });

  it('converts a spool of the first format (ID.eml + ID.json) and drops bodies without state', async () => {
    await mkdir(join(dir, 'queue'), { recursive: true });
    await mkdir(join(dir, 'tmp'), { recursive: true });
    const id = '0190000000000000000001ab';
    const v1 = { version: 1, id, mailFrom: 's@partner.example.net', rcptTo: ['a@corp.example.com'], sha256: 'x', size: 3, receivedAt: 5, client: { address: '127.0.0.1', helo: 'x' }, headers: [], deliveries: { primary: { recipients: { 'a@corp.example.com': { status: 'pending' } }, attempts: 2, nextAttemptAt: 0 } } };
    await writeFile(join(dir, 'queue', `${id}.eml`), 'v1\n');
    await writeFile(join(dir, 'queue', `${id}.json`), JSON.stringify(v1));
    await writeFile(join(dir, 'queue', '0190000000000000000002ab.eml'), 'no state');
    const { loaded, spool } = await openSpool();
    expect(loaded).toEqual([{ ...v1, version: 2 }]);
    expect(await readdir(join(dir, 'queue'))).toEqual([`${id}.msg`]);
    expect((await readdir(dir)).sort()).toEqual(['dead', 'journal.log', 'queue']);
    await spool.close();
  });

  it('`queue list` and `queue show` read the spool without a relay', async () => {
    const { spool } = await openSpool();
    const a = await put(spool, 'Subject: listed\r\nX-Other: 1\r\n\r\nbody text\r\n');
    a.deliveries.primary!.attempts = 3;
    a.deliveries.primary!.lastError = '451 4.3.0 try again';
    await spool.saveState(a);
    await spool.close();
    const out: string[] = [];
    const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      out.push(String(chunk));
      return true;
    });
    try {
      expect(await runQueue(['list', '--spool', dir])).toBe(0);
      expect(out.join('')).toContain(`${a.id}`);
      expect(out.join('')).toContain('primary: 1 pending (attempts 3) last: 451 4.3.0 try again');
      out.length = 0;
      expect(await runQueue(['show', a.id, '--spool', dir])).toBe(0);
      expect(out.join('')).toContain('"lastError": "451 4.3.0 try again"');
      expect(out.join('')).toMatch(/\(headers\)\nSubject: listed\r\nX-Other: 1\n$/);
      out.length = 0;
      expect(await runQueue(['show', 'abc', '--spool', dir])).toBe(1);
    } finally {
      spy.mockRestore();
    }
  });
});
