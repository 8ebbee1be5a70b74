// The audit log's hash chain (pure). Every line is one JSON record carrying
// `seq` (0, 1, 2, ... within its file) and `prev`, the SHA-256 of the line
// before it, so a changed, removed or inserted line breaks the chain at the
// next one. Each file (segment) starts with a genesis record naming its
// segment number, and its `prev` is the hash of the previous segment's last
// line (null for segment 1): a file removed from the middle breaks it too.
import { createHash } from 'node:crypto';

export const AUDIT_FORMAT = 'mail-continuity-audit/1';

/** Where the chain stands: the next line of `segment` gets `seq`, and `prev` is the hash of the line before. */
export interface ChainHead {
  segment: number;
  /** The next record's seq; 0 means the next line is the segment's genesis record. */
  seq: number;
  prev: string | null;
}

export interface GenesisRecord {
  seq: 0;
  prev: string | null;
  time: string;
  action: 'genesis';
  format: typeof AUDIT_FORMAT;
  segment: number;
  instance: string;
}

export const hashLine = (line: string): string => createHash('sha256').update(line, 'utf8').digest('hex');

/**
 * The line for `fields` at `head` (a genesis record first when the segment is
 * new) and the head after it. `fields` must not carry seq or prev.
 */
export function seal(head: ChainHead, fields: Record<string, unknown>, genesis: { time: string; instance: string }): { text: string; head: ChainHead } {
  let text = '';
  let { seq, prev } = head;
  if (seq === 0) {
    const g: GenesisRecord = { seq: 0, prev, time: genesis.time, action: 'genesis', format: AUDIT_FORMAT, segment: head.segment, instance: genesis.instance };
    const line = JSON.stringify(g);
    text += `${line}\n`;
    prev = hashLine(line);
    seq = 1;
  }
  const line = JSON.stringify({ seq, prev, ...fields });
  text += `${line}\n`;
  return { text, head: { segment: head.segment, seq: seq + 1, prev: hashLine(line) } };
}

/** One line read back: its record, or why it is not one. */
export function parseLine(line: string): { ok: true; record: Record<string, unknown> } | { ok: false; reason: string } {
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch {
    return { ok: false, reason: 'not a JSON record' };
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return { ok: false, reason: 'not a JSON object' };
  const r = record as Record<string, unknown>;
  if (!Number.isSafeInteger(r.seq) || (r.prev !== null && typeof r.prev !== 'string')) return { ok: false, reason: 'no seq/prev: not a chained audit record' };
  return { ok: true, record: r };
}

export const isGenesis = (r: Record<string, unknown>): boolean => r.action === 'genesis' && r.seq === 0 && r.format === AUDIT_FORMAT && Number.isSafeInteger(r.segment);
