import { describe, expect, it } from '@jest/globals';
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { runDead } from '../../src/relay/spool/dead-cli.js';
import { DeadLetters, deadLimits, deadToRemove } from '../../src/relay/spool/dead.js';
import { relayTestConfig } from '../harness/smtp-tools.js';

const H = 3_600_000;
const e = (id: string, at: number, bytes: number) => ({ id, at, bytes });

describe('dead/ limits (pure)', () => {
  it('past the retention first, then the oldest until the rest fit the cap; nothing when within both', () => {
    const now = 100 * H;
    const entries = [e('c', now - 1 * H, 100), e('a', now - 50 * H, 100), e('b', now - 2 * H, 100), e('d', now - 0.5 * H, 100)];
    expect(deadToRemove(entries, now, { maxBytes: 1000, retentionMs: 24 * H })).toEqual([{ id: 'a', reason: 'retention' }]);
    expect(deadToRemove(entries, now, { maxBytes: 150, retentionMs: 24 * H })).toEqual([
      { id: 'a', reason: 'retention' },
      { id: 'b', reason: 'size' },
      { id: 'c', reason: 'size' },
    ]);
    expect(deadToRemove(entries, now, { maxBytes: 1000, retentionMs: 100 * H })).toEqual([]);
  });

  it('defaults in line with the spool: a quarter of the volume, the spool retention', () => {
    const c = relayTestConfig({ spool: '/x', primaryPort: 25 });
    expect(deadLimits(c)).toEqual({ maxBytes: 10 * 2 ** 30 / 4, retentionMs: 120 * H });
    const spec = { ...c.spec, relay: { ...c.spec.relay, spool: { ...c.spec.relay.spool, deadLetters: { maxSize: '1Gi', retention: '48h' } } } };
    expect(deadLimits({ spec })).toEqual({ maxBytes: 2 ** 30, retentionMs: 48 * H });
  });
});

describe('dead/ on disk and the CLI', () => {
  async function spoolWithDead(n: number): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'dead-'));
    await writeFile(join(dir, 'x'), '');
    const dead = join(dir, 'dead');
    await rm(dead, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(dead));
    for (let i = 0; i < n; i++) {
      const id = `00000000000${i}`;
      await writeFile(join(dead, `${id}.eml`), `Subject: dead ${i}\r\nMessage-ID: <dead-${i}@x>\r\n\r\nFrom the start\r\n`);
      await writeFile(join(dead, `${id}.json`), JSON.stringify({ id, mailFrom: 's@partner.example', dead: { at: Date.now() - (n - i) * H, reason: 'rejected by a destination' } }));
      const t = new Date(Date.now() - (n - i) * H);
      await utimes(join(dead, `${id}.json`), t, t);
    }
    return dir;
  }

  it('DeadLetters.sweep removes by retention and size and reports what is left', async () => {
    const dir = await spoolWithDead(4);
    const reports: unknown[] = [];
    const d = new DeadLetters(join(dir, 'dead'), { maxBytes: 400, retentionMs: 3.5 * H }, (r) => reports.push(r), pino({ level: 'silent' }));
    const r = await d.sweep();
    expect(r.removed.map((x) => x.reason)).toEqual(['retention', 'size']);
    expect(r.messages).toBe(2);
    expect(r.bytes).toBeLessThanOrEqual(400);
    expect((await readdir(join(dir, 'dead'))).length).toBe(4);
    await rm(dir, { recursive: true, force: true });
  });

  it('dead export writes an mbox (From_ quoted, the reason); purge by id, --older-than, --all; misuse is a usage error', async () => {
    const dir = await spoolWithDead(3);
    let out = '';
    expect(await runDead(['export', '--spool', dir], (s) => (out += s))).toBe(0);
    expect(out.match(/^From s@partner\.example /gm)).toHaveLength(3);
    expect(out).toContain('X-Mail-Continuity-Dead-Reason: rejected by a destination');
    expect(out).toContain('\n>From the start\n');
    const file = join(dir, 'out.mbox');
    expect(await runDead(['export', '000000000001', '--out', file, '--spool', dir], () => undefined)).toBe(0);
    expect(await readFile(file, 'utf8')).toContain('Message-ID: <dead-1@x>');
    await expect(runDead(['purge', '--spool', dir], () => undefined)).rejects.toThrow(/exactly one of/);
    await expect(runDead(['purge', 'zz', '--spool', dir], () => undefined)).rejects.toThrow(/not a spool id/);
    await expect(runDead(['purge', '--older-than', 'soon', '--spool', dir], () => undefined)).rejects.toThrow(/--older-than/);
    expect(await runDead(['purge', '000000000002', '--spool', dir], (s) => (out = s))).toBe(0);
    expect(out).toMatch(/removed 1 /);
    expect(await runDead(['purge', '--older-than', '2h30m', '--spool', dir], (s) => (out = s))).toBe(0);
    expect(out).toMatch(/removed 1 /); // 000000000000, 3 h old
    expect(await runDead(['purge', '--all', '--spool', dir], (s) => (out = s))).toBe(0);
    expect(out).toMatch(/removed 1 /);
    expect(await readdir(join(dir, 'dead'))).toEqual([]);
    await rm(dir, { recursive: true, force: true });
  });
});
