// The audit log's hash chain, rotation and retention on real files, and
// `mail-continuity audit verify|export` against them: a flipped byte, a
// removed line, a removed file in the middle are each named.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { appendFile, mkdtemp, readdir, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { hashLine } from '../../src/relay/audit/chain.js';
import { runAudit } from '../../src/relay/audit/cli.js';
import { AuditLog, type AuditOptions } from '../../src/relay/audit/log.js';
import { readChain } from '../../src/relay/audit/read.js';
import { expiredSegments } from '../../src/relay/audit/segments.js';
import type { SpooledMessage } from '../../src/relay/types.js';

const log = pino({ level: 'silent' });
let dir: string;
let path: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-audit-'));
  path = join(dir, 'audit.log');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const message = (i: number): SpooledMessage => ({
  id: `m${i}`,
  mailFrom: 's@partner.example.net',
  rcptTo: ['a@corp.example.com'],
  messageId: `${i}@test`,
  sha256: 'ab'.repeat(32),
  size: 10,
  receivedAt: Date.now(),
  path: '/nonexistent',
});

/** Writes `n` records (an intent and its copy alternately) through a log with these options. */
async function write(n: number, opts: AuditOptions = { maxFileBytes: 1 << 20, retainFiles: 100, retainForMs: Infinity }, from = 0): Promise<void> {
  const audit = new AuditLog(path, 'unit', log, opts);
  await audit.open();
  for (let i = from; i < from + n; i++) {
    if (i % 2 === 0) await audit.intent(message(i), ['a@corp.example.com'], 'failover-active');
    else await audit.record(message(i), ['a@corp.example.com'], 'copied-to-backup');
  }
  await audit.close();
}

const small: AuditOptions = { maxFileBytes: 1500, retainFiles: 100, retainForMs: Infinity };

async function lines(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8')).split('\n').slice(0, -1);
}

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runAudit(args, (s) => (out += s), (s) => (err += s));
  return { code, out, err };
}

describe('audit chain', () => {
  it('each file starts with a genesis record; each record carries the hash of the one before, across files', async () => {
    await write(20, small);
    const files = (await readdir(dir)).sort();
    expect(files.length).toBeGreaterThan(3);
    expect(files[0]).toBe('audit.log');
    expect(files[1]).toBe('audit.log.00000001');
    const first = await lines(join(dir, 'audit.log.00000001'));
    const genesis = JSON.parse(first[0]!) as Record<string, unknown>;
    expect(genesis).toMatchObject({ seq: 0, prev: null, action: 'genesis', segment: 1, format: 'mail-continuity-audit/1' });
    expect(JSON.parse(first[1]!)).toMatchObject({ seq: 1, prev: hashLine(first[0]!), action: 'copy-intent', reason: 'failover-active', spoolId: 'm0' });
    const second = await lines(join(dir, 'audit.log.00000002'));
    expect(JSON.parse(second[0]!)).toMatchObject({ seq: 0, segment: 2, action: 'genesis', prev: hashLine(first.at(-1)!) });
    const report = await readChain(path);
    expect(report.broken).toBeUndefined();
    expect(report.records).toBe(20);
    expect(report.segments).toEqual(files.map((_, i) => i + 1));
  });

  it('a relay that restarts goes on with the chain of its file; a line cut short by a crash is cut off', async () => {
    await write(3);
    await appendFile(path, '{"seq":4,"prev":"0');
    await write(3, undefined, 3);
    const all = await lines(path);
    expect(all.map((l) => (JSON.parse(l) as { seq: number }).seq)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect((await readChain(path)).broken).toBeUndefined();
  });

  it('a file written before the chain is moved aside and a new chained file starts', async () => {
    await writeFile(path, '{"action":"excluded","rule":"x"}\n');
    await write(2);
    expect((await readdir(dir)).some((f) => /^audit\.log\.unchained-\d+$/.test(f))).toBe(true);
    expect((await readChain(path)).records).toBe(2);
  });

  it('retention keeps the newest rotated files (count) and drops old ones (age)', async () => {
    await write(40, { ...small, retainFiles: 2 });
    const files = (await readdir(dir)).sort();
    expect(files.filter((f) => /\.\d{8}$/.test(f))).toHaveLength(2);
    const report = await readChain(path);
    expect(report.broken).toBeUndefined();
    expect(report.notes.join()).toMatch(/segments 1 to \d+ are not here/);
    const now = 1_000_000;
    expect(expiredSegments([{ path: 'a', mtimeMs: 0 }, { path: 'b', mtimeMs: now - 10 }, { path: 'c', mtimeMs: now }], { files: 10, maxAgeMs: 100 }, now)).toEqual(['a']);
    expect(expiredSegments([{ path: 'a', mtimeMs: now }, { path: 'b', mtimeMs: now }, { path: 'c', mtimeMs: now }], { files: 2, maxAgeMs: Infinity }, now)).toEqual(['a']);
  });

  it('a flipped byte is named: the record changed', async () => {
    await write(20, small);
    const file = join(dir, 'audit.log.00000002');
    const text = await readFile(file, 'utf8');
    const all = text.split('\n');
    all[2] = all[2]!.replace('"to":["a@', '"to":["b@');
    await writeFile(file, all.join('\n'));
    const r = await readChain(path);
    expect(r.broken).toEqual({ file, line: 3, reason: 'the record was changed (line 4 holds a different hash of it)' });
    const { code, err } = await cli(['verify', '--dir', dir]);
    expect(code).toBe(1);
    expect(err).toBe(`mail-continuity audit: audit log broken: ${file} line 3: the record was changed (line 4 holds a different hash of it)\n`);
  });

  it('a deleted line is named, also the last one of a file', async () => {
    await write(20, small);
    const file = join(dir, 'audit.log.00000001');
    const all = await lines(file);
    await writeFile(file, [...all.slice(0, 2), ...all.slice(3)].map((l) => `${l}\n`).join(''));
    expect((await readChain(path)).broken).toEqual({ file, line: 3, reason: 'seq 3 follows seq 1: record(s) removed before this line' });
    await writeFile(file, all.slice(0, -1).map((l) => `${l}\n`).join(''));
    expect((await readChain(path)).broken).toMatchObject({ file, line: all.length - 1, reason: expect.stringMatching(/last record of segment 1 was changed or removed/) });
  });

  it('a file removed from the middle is named; a truncated last line too', async () => {
    await write(20, small);
    await unlink(join(dir, 'audit.log.00000002'));
    const r = await readChain(path);
    expect(r.broken).toEqual({ file: join(dir, 'audit.log.00000003'), line: 1, reason: 'segment 2 missing before audit.log.00000003: an audit file was removed' });
    await rm(dir, { recursive: true });
    dir = await mkdtemp(join(tmpdir(), 'relay-audit-'));
    path = join(dir, 'audit.log');
    await write(4);
    const size = (await readFile(path)).length;
    await truncate(path, size - 5);
    expect((await readChain(path)).broken).toMatchObject({ file: path, reason: 'the last line is incomplete (no newline)' });
  });
});

describe('mail-continuity audit', () => {
  it('verify: intact files answer 0 with the counts', async () => {
    await write(20, small);
    const { code, out } = await cli(['verify', '--dir', dir]);
    expect(code).toBe(0);
    expect(out).toMatch(/^audit log intact: \d+ file\(s\), segments 1, 2, .*, 20 record\(s\), last hash [0-9a-f]{64}\n$/);
  });

  it('export: the records as written whose time is in [since, until)', async () => {
    // Four records a millisecond apart at least, so that [times[1], times[3]) is never empty.
    const audit = new AuditLog(path, 'unit', log, { maxFileBytes: 1 << 20, retainFiles: 100, retainForMs: Infinity });
    await audit.open();
    for (let i = 0; i < 4; i++) {
      const t = Date.now();
      await audit.record(message(i), ['a@corp.example.com'], 'copied-to-backup');
      while (Date.now() <= t) await new Promise((resolve) => setImmediate(resolve));
    }
    await audit.close();
    const all = (await lines(path)).slice(1);
    const times = all.map((l) => (JSON.parse(l) as { time: string }).time);
    const { code, out } = await cli(['export', '--dir', dir, '--since', times[1]!, '--until', times[3]!]);
    expect(code).toBe(0);
    const exported = out.split('\n').slice(0, -1);
    expect(exported).toHaveLength(2);
    expect(exported).toEqual(all.filter((_, i) => times[i]! >= times[1]! && times[i]! < times[3]!));
    expect((await cli(['export', '--dir', dir])).out.split('\n').slice(0, -1)).toEqual(all);
  });

  it('misuse answers 2 naming the flag and the fix', async () => {
    expect(await cli(['verify'])).toMatchObject({ code: 2, err: expect.stringMatching(/^mail-continuity audit: --dir is required/) });
    expect(await cli(['export', '--dir', dir, '--since', 'yesterday'])).toMatchObject({ code: 2, err: expect.stringMatching(/--since: "yesterday" is not an ISO 8601 time/) });
    expect(await cli(['check', '--dir', dir])).toMatchObject({ code: 2, err: expect.stringMatching(/unknown subcommand "check"/) });
    expect(await cli(['verify', '--dir', join(dir, 'nope')])).toMatchObject({ code: 2, err: expect.stringMatching(/is not a directory/) });
    expect(await cli(['verify', '--dir', dir])).toMatchObject({ code: 1, err: expect.stringMatching(/no audit log files audit\.log\[\.NNNNNNNN\]/) });
  });

  it('the mail-continuity command itself', async () => {
    await write(20, small);
    const run = promisify(execFile);
    const ok = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'audit', 'verify', '--dir', dir], { cwd: process.cwd() });
    expect(ok.stdout).toMatch(/audit log intact/);
    await unlink(join(dir, 'audit.log.00000001'));
    const file2 = join(dir, 'audit.log.00000002');
    const all = await lines(file2);
    await writeFile(file2, [...all.slice(0, 1), ...all.slice(2)].map((l) => `${l}\n`).join(''));
    const broken = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'audit', 'verify', '--dir', dir]).catch((e: { code: number; stderr: string }) => e);
    expect(broken).toMatchObject({ code: 1, stderr: `mail-continuity audit: audit log broken: ${file2} line 2: seq 2 follows seq 0: record(s) removed before this line\n` });
  });
});
