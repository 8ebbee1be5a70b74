import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Spool, type MessageState } from '../../src/relay/spool.js';

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

describe('spool', () => {
  it('commits body and state into queue/, with size and sha256 of the body', async () => {
    const spool = new Spool(dir, { log });
    await spool.init();
    const state = await put(spool, 'Subject: x\r\n\r\nhello\r\n');
    expect(await readdir(join(dir, 'queue'))).toEqual([`${state.id}.eml`, `${state.id}.json`].sort());
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    expect(state.size).toBe(Buffer.byteLength('Subject: x\r\n\r\nhello\r\n'));
    expect(state.sha256).toBe(createHash('sha256').update('Subject: x\r\n\r\nhello\r\n').digest('hex'));
    expect(JSON.parse(await readFile(join(dir, 'queue', `${state.id}.json`), 'utf8'))).toEqual(state);
    expect(spool.bytes).toBe(state.size);
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

  it('state transitions persist; load() resumes them; remove() and moveToDead() leave the queue', async () => {
    const spool = new Spool(dir, { log });
    await spool.init();
    const a = await put(spool, 'a\r\n', ['x@corp.example.com', 'y@corp.example.com']);
    const b = await put(spool, 'b\r\n');
    const c = await put(spool, 'c\r\n');
    a.deliveries.primary!.recipients['x@corp.example.com'] = { status: 'delivered', at: 1 };
    a.deliveries.primary!.attempts = 1;
    a.deliveries.backup = { recipients: { 'x@corp.example.com': { status: 'excluded', rule: 'confidential' } }, attempts: 0, nextAttemptAt: 0 };
    await spool.saveState(a);
    await spool.remove(b);
    await spool.moveToDead(c, 'rejected');

    const again = new Spool(dir, { log });
    await again.init();
    const loaded = await again.load();
    expect(loaded.map((s) => s.id)).toEqual([a.id]);
    expect(loaded[0]).toEqual(a);
    expect(again.bytes).toBe(3);
    expect((await readdir(join(dir, 'dead'))).sort()).toEqual([`${c.id}.eml`, `${c.id}.json`]);
    const dead = JSON.parse(await readFile(join(dir, 'dead', `${c.id}.json`), 'utf8')) as MessageState;
    expect(dead.dead?.reason).toBe('rejected');
  });

  it('at start: removes tmp leftovers and bodies without state (never acknowledged), dead-letters states without body', async () => {
    const spool = new Spool(dir, { log });
    await spool.init();
    const a = await put(spool, 'a\r\n');
    const b = await put(spool, 'b\r\n');
    await writeFile(join(dir, 'tmp', 'half-written.eml'), 'x');
    await writeFile(join(dir, 'queue', '0000000000000000000000.eml'), 'orphan body');
    await rm(join(dir, 'queue', `${b.id}.eml`));
    const again = new Spool(dir, { log });
    await again.init();
    const loaded = await again.load();
    expect(loaded.map((s) => s.id)).toEqual([a.id]);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    expect(await readdir(join(dir, 'queue'))).toEqual([`${a.id}.eml`, `${a.id}.json`].sort());
    expect(await readdir(join(dir, 'dead'))).toEqual([`${b.id}.nobody.json`]);
  });

  it('an aborted message leaves nothing behind', async () => {
    const spool = new Spool(dir, { log });
    await spool.init();
    const w = await spool.create();
    await w.write(Buffer.from('partial'));
    await w.abort();
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
    expect(await readdir(join(dir, 'queue'))).toEqual([]);
  });

  it('a body whose size does not match its state (torn by a power loss before the 250) goes to dead/, not to delivery', async () => {
    const spool = new Spool(dir, { log });
    await spool.init();
    const a = await put(spool, 'complete body\r\n');
    await writeFile(join(dir, 'queue', `${a.id}.eml`), 'compl');
    const again = new Spool(dir, { log });
    await again.init();
    expect(await again.load()).toEqual([]);
    expect((await readdir(join(dir, 'dead'))).sort()).toEqual([`${a.id}.torn.eml`, `${a.id}.torn.json`]);
  });

  it('an attempt journaled but never recorded in the state comes back as in flight after a restart', async () => {
    const spool = new Spool(dir, { log });
    await spool.init();
    await spool.load();
    const a = await put(spool, 'a\r\n');
    const b = await put(spool, 'b\r\n');
    await spool.attempts.start(a.id, 'primary', 1);
    await spool.attempts.start(b.id, 'primary', 1);
    b.deliveries.primary!.attempts = 1; // b's outcome was recorded
    await spool.saveState(b);
    await spool.attempts.close();
    const again = new Spool(dir, { log });
    await again.init();
    const loaded = await again.load();
    expect(loaded.find((s) => s.id === a.id)!.deliveries.primary!.inFlightSince).toBe(a.receivedAt);
    expect(loaded.find((s) => s.id === b.id)!.deliveries.primary!.inFlightSince).toBeUndefined();
    await again.attempts.close();
    // The journal starts afresh: a third start sees nothing in flight.
    const third = new Spool(dir, { log });
    await third.init();
    expect((await third.load()).every((s) => s.deliveries.primary!.inFlightSince === undefined)).toBe(true);
    await third.attempts.close();
  });
});
