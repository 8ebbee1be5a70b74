// The system calls of a process, as `strace -f -tt -yy -s N -o FILE` wrote them,
// read back as calls with a start and an end: the order of events in the file
// is the order in which the kernel saw them (a call another thread was still
// in shows as "<unfinished ...>", then "<... name resumed>"). Used to prove
// orderings a crash test cannot see: "the fdatasync of the queue file returned
// before the 250 was written to the socket".
import { readFile } from 'node:fs/promises';

export interface Syscall {
  pid: number;
  name: string;
  /** The arguments as strace printed them (strings escaped, fds with their paths: -yy). */
  args: string;
  /** The return value as printed ("0", "50", "-1 ENOSPC (...)"), undefined while unfinished. */
  ret: string | undefined;
  /** Index of the event that started it and of the one that ended it (the same for a call printed whole). */
  start: number;
  end: number;
}

/** strace's command prefix for `-o file`; the traced command follows it. */
export function straceCommand(outFile: string, calls: readonly string[]): string[] {
  return ['strace', '-f', '-tt', '-yy', '-s', '4096', '-e', `trace=${calls.join(',')}`, '-o', outFile];
}

const WHOLE = /^(\d+)\s+[\d:.]+\s+(\w+)\((.*)\)\s+=\s+(.*)$/;
const UNFINISHED = /^(\d+)\s+[\d:.]+\s+(\w+)\((.*?)\s*<unfinished \.\.\.>$/;
const RESUMED = /^(\d+)\s+[\d:.]+\s+<\.\.\. (\w+) resumed>(.*?)\)?\s+=\s+(.*)$/;

export function parseStrace(text: string): Syscall[] {
  const calls: Syscall[] = [];
  const open = new Map<string, Syscall>();
  text.split('\n').forEach((line, i) => {
    let m = UNFINISHED.exec(line);
    if (m) {
      const c: Syscall = { pid: Number(m[1]), name: m[2]!, args: m[3]!, ret: undefined, start: i, end: Infinity };
      open.set(`${c.pid} ${c.name}`, c);
      calls.push(c);
      return;
    }
    m = RESUMED.exec(line);
    if (m) {
      const c = open.get(`${m[1]} ${m[2]}`);
      if (c) {
        c.args += m[3];
        c.ret = m[4];
        c.end = i;
        open.delete(`${m[1]} ${m[2]}`);
      }
      return;
    }
    m = WHOLE.exec(line);
    if (m) calls.push({ pid: Number(m[1]), name: m[2]!, args: m[3]!, ret: m[4], start: i, end: i });
  });
  return calls;
}

export async function readStrace(file: string): Promise<Syscall[]> {
  return parseStrace(await readFile(file, 'utf8'));
}

/** The path strace printed for the call's first argument (an fd with -y: `25</spool/queue/x.msg>`). */
export function fdPath(c: Syscall): string | undefined {
  return /^\d+<([^>]*)>/.exec(c.args)?.[1];
}

/** A call succeeded: it returned and not -1. */
export const succeeded = (c: Syscall) => c.ret !== undefined && !c.ret.startsWith('-1');

/** Writes of any kind (write, writev, pwrite64, sendto, sendmsg). */
export const isWrite = (c: Syscall) => /^(write|writev|pwrite64|pwritev2?|sendto|sendmsg)$/.test(c.name);
