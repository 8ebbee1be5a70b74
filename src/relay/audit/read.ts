// Reading the audit log back: the first and last whole lines of a file (where
// the writer's chain stands), and every record of every segment in order with
// the chain checked as it goes (audit verify and audit export).
import { readFile, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { hashLine, isGenesis, parseLine } from './chain.js';
import { listSegments } from './segments.js';

const CHUNK = 64 * 1024;
/** A record longer than this is not searched for (500 recipients of 320 characters fit many times). */
const MAX_LINE = 16 * 1024 * 1024;

/** The first and the last whole line of a file, and where the whole lines end (a torn tail starts there). */
export async function readEnds(fh: FileHandle, size: number): Promise<{ first: string | null; last: string | null; end: number }> {
  const read = async (at: number, n: number) => {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, at);
    return buf.subarray(0, bytesRead);
  };
  // Newlines from the end backwards: the last one ends the whole lines, the one before starts the last line.
  const newlines: number[] = [];
  for (let pos = size; pos > 0 && newlines.length < 2 && size - pos < MAX_LINE; ) {
    const from = Math.max(0, pos - CHUNK);
    const buf = await read(from, pos - from);
    for (let i = buf.length - 1; i >= 0 && newlines.length < 2; i--) if (buf[i] === 0x0a) newlines.push(from + i);
    pos = from;
  }
  if (newlines.length === 0) return { first: null, last: null, end: 0 };
  const end = newlines[0]! + 1;
  const lastStart = newlines.length > 1 ? newlines[1]! + 1 : 0;
  const last = (await read(lastStart, end - 1 - lastStart)).toString('utf8');
  const head = await read(0, Math.min(end, CHUNK));
  const nl = head.indexOf(0x0a);
  const first = nl < 0 ? null : head.subarray(0, nl).toString('utf8');
  return { first, last, end };
}

export interface ChainBreak {
  file: string;
  /** 1-based line number in the file (0: the file as a whole). */
  line: number;
  reason: string;
}

export interface ChainReport {
  files: string[];
  records: number;
  /** Segment numbers present, oldest first. */
  segments: number[];
  lastHash: string | null;
  /** Things that are not a break (older segments removed by the retention). */
  notes: string[];
  broken?: ChainBreak;
}

/**
 * Reads every segment of the audit log `activePath` (rotated ones oldest first,
 * then the active file) and checks the chain; `onRecord` gets each record that
 * is not a genesis record, in order, with its line as written. Stops at the
 * first break.
 */
export async function readChain(activePath: string, onRecord: (record: Record<string, unknown>, line: string) => void = () => undefined): Promise<ChainReport> {
  const report: ChainReport = { files: [], records: 0, segments: [], lastHash: null, notes: [] };
  const segments = await listSegments(activePath);
  if (segments.length === 0) {
    report.broken = { file: activePath, line: 0, reason: `no audit log files ${basename(activePath)}[.NNNNNNNN] in that directory` };
    return report;
  }
  let prevSegment: number | null = null;
  let prevFile: { path: string; lines: number } | null = null;
  for (const seg of segments) {
    const name = basename(seg.path);
    report.files.push(seg.path);
    const fail = (line: number, reason: string, file = seg.path) => {
      report.broken = { file, line, reason };
      return report;
    };
    const text = await readFile(seg.path, 'utf8');
    if (text.length === 0) {
      // An active file created but not written yet.
      if (seg.number !== null) return fail(0, 'the file is empty');
      continue;
    }
    const lines = text.split('\n');
    if (lines.at(-1) !== '') return fail(lines.length, 'the last line is incomplete (no newline)');
    lines.pop();
    let expectSeq = 0;
    let prev: string | null = null;
    for (let i = 0; i < lines.length; i++) {
      const lineNo = i + 1;
      const line = lines[i]!;
      const parsed = parseLine(line);
      if (!parsed.ok) return fail(lineNo, `${parsed.reason} (changed, or written by something else)`);
      const r = parsed.record;
      if (lineNo === 1) {
        if (!isGenesis(r)) return fail(1, 'the file does not start with a genesis record (its first lines were removed or changed)');
        const number = r.segment as number;
        if (seg.number !== null && seg.number !== number) return fail(1, `the genesis record names segment ${number}, the file name segment ${seg.number} (renamed?)`);
        if (prevSegment === null) {
          if (number !== 1) report.notes.push(`segments 1 to ${number - 1} are not here (removed by the retention, or by hand): the chain is checked from segment ${number}`);
          else if (r.prev !== null) return fail(1, 'segment 1 has a previous hash: it is not the first segment');
        } else if (number !== prevSegment + 1) {
          return fail(1, `segment ${prevSegment + 1}${number - 1 > prevSegment + 1 ? ` to ${number - 1}` : ''} missing before ${name}: an audit file was removed`);
        } else if (r.prev !== report.lastHash) {
          return fail(prevFile!.lines, `the last record of segment ${prevSegment} was changed or removed (the genesis record of ${name} holds a different hash)`, prevFile!.path);
        }
        prevSegment = number;
        report.segments.push(number);
      } else {
        if (r.seq !== expectSeq) {
          return fail(
            lineNo,
            (r.seq as number) > expectSeq ? `seq ${r.seq as number} follows seq ${expectSeq - 1}: record(s) removed before this line` : `seq ${r.seq as number} where ${expectSeq} was due: a record was inserted or repeated`,
          );
        }
        if (r.prev !== prev) return fail(lineNo - 1, `the record was changed (line ${lineNo} holds a different hash of it)`);
        report.records++;
        onRecord(r, line);
      }
      prev = hashLine(line);
      expectSeq = (r.seq as number) + 1;
    }
    report.lastHash = prev;
    prevFile = { path: seg.path, lines: lines.length };
  }
  return report;
}
