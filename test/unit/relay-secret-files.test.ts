import { describe, expect, it } from '@jest/globals';
import { mkdtemp, rename, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { SecretFiles, stampChanged } from '../../src/relay/control/secret-files.js';

describe('mounted Secret files', () => {
  it('stampChanged: another inode, size or time; appearing or vanishing', () => {
    const a = { ino: 1, size: 10, mtimeMs: 5, ctimeMs: 5 };
    expect(stampChanged(a, { ...a })).toBe(false);
    expect(stampChanged(a, { ...a, ino: 2 })).toBe(true);
    expect(stampChanged(a, { ...a, mtimeMs: 6 })).toBe(true);
    expect(stampChanged(undefined, a)).toBe(true);
    expect(stampChanged(a, undefined)).toBe(true);
    expect(stampChanged(undefined, undefined)).toBe(false);
  });

  it('a ..data swap is seen; a reload that throws is retried at the next poll until it succeeds; no change, no reload', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'secret-files-'));
    const version = async (v: string, text: string) => {
      await mkdir(join(dir, `..${v}`));
      await writeFile(join(dir, `..${v}`, 'token'), text);
      await symlink(`..${v}`, join(dir, '..tmp'));
      await rename(join(dir, '..tmp'), join(dir, '..data'));
    };
    await version('1', 'one');
    await symlink('..data/token', join(dir, 'token'));
    const s = new SecretFiles(pino({ level: 'silent' }));
    let calls = 0;
    let fail = true;
    await s.watch('token', [join(dir, 'token'), undefined], async () => {
      calls++;
      if (fail) throw new Error('not yet');
    });
    await s.poll();
    expect(calls).toBe(0);
    await version('2', 'two');
    await s.poll();
    expect(calls).toBe(1); // failed: retried
    fail = false;
    await s.poll();
    expect(calls).toBe(2);
    await s.poll();
    expect(calls).toBe(2);
    await s.stop();
    await rm(dir, { recursive: true, force: true });
  });
});
