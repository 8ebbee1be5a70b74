// The audit log's files: the active one (`audit.log`) and the rotated ones,
// renamed to `audit.log.00000001`, `audit.log.00000002`, ... by the segment
// number their genesis record carries, so `ls` sorts them in order. Which
// rotated files the retention removes is decided here (pure).
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export interface Segment {
  path: string;
  /** From the file name; null for the active file. */
  number: number | null;
}

export const rotatedName = (activePath: string, segment: number): string => `${activePath}.${String(segment).padStart(8, '0')}`;

/** The rotated segments of `activePath`, oldest first, then the active file if it exists. */
export async function listSegments(activePath: string): Promise<Segment[]> {
  const dir = dirname(activePath);
  const base = basename(activePath);
  const re = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(\\d{8,})$`);
  const out: Segment[] = [];
  let active = false;
  for (const name of await readdir(dir)) {
    if (name === base) active = true;
    const m = re.exec(name);
    if (m) out.push({ path: join(dir, name), number: Number(m[1]) });
  }
  out.sort((a, b) => a.number! - b.number!);
  if (active) out.push({ path: activePath, number: null });
  return out;
}

export interface Retention {
  /** Rotated files kept, newest first. */
  files: number;
  /** Rotated files whose last record is older than this are removed (Infinity: never). */
  maxAgeMs: number;
}

/** The rotated files to remove: beyond the newest `files`, or last written more than maxAgeMs ago. */
export function expiredSegments(rotated: ReadonlyArray<{ path: string; mtimeMs: number }>, retention: Retention, now: number): string[] {
  const newestFirst = [...rotated].reverse();
  return newestFirst.filter((s, i) => i >= retention.files || now - s.mtimeMs > retention.maxAgeMs).map((s) => s.path);
}

/** The rotated segments with their modification times (the time of their last record). */
export async function rotatedWithTimes(activePath: string): Promise<Array<{ path: string; number: number; mtimeMs: number }>> {
  const out: Array<{ path: string; number: number; mtimeMs: number }> = [];
  for (const s of await listSegments(activePath)) {
    if (s.number === null) continue;
    out.push({ path: s.path, number: s.number, mtimeMs: (await stat(s.path)).mtimeMs });
  }
  return out;
}
