// One queue file: the message exactly as it will be delivered, `size` bytes,
// then its envelope as a trailer:
//   #envelope {"version":2,"id":...,"size":N,"sha256":...,"rcptTo":[...],...}\n
//   #end N\n
// `tail -n 2 queue/<id>.msg` shows the envelope, `head -c N` the message.
import { createReadStream, type ReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { SpooledMessage } from '../types.js';
import type { MessageState } from './state.js';

export function trailer(state: MessageState): Buffer {
  return Buffer.from(`#envelope ${JSON.stringify(state)}\n#end ${state.size}\n`, 'utf8');
}

/** The envelope in a queue file's trailer; undefined when the file is incomplete. */
export async function readTrailer(path: string): Promise<MessageState | undefined> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, 'r');
    const { size: fileSize } = await fh.stat();
    const tailLen = Math.min(fileSize, 32);
    const tail = Buffer.alloc(tailLen);
    await fh.read(tail, 0, tailLen, fileSize - tailLen);
    const m = /#end (\d+)\n$/.exec(tail.toString('latin1'));
    if (!m) return undefined;
    const size = Number(m[1]);
    const endLen = m[0].length;
    const prefix = '#envelope ';
    const envLen = fileSize - endLen - size;
    if (envLen <= prefix.length + 1) return undefined;
    const env = Buffer.alloc(envLen);
    await fh.read(env, 0, envLen, size);
    const text = env.toString('utf8');
    if (!text.startsWith(prefix) || !text.endsWith('\n')) return undefined;
    const state = JSON.parse(text.slice(prefix.length, -1)) as MessageState;
    return state.size === size && typeof state.id === 'string' ? state : undefined;
  } catch {
    return undefined;
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** The message's bytes from its spool file: [0, size), the trailer after them left out. */
export function messageFileStream(message: Pick<SpooledMessage, 'path' | 'size'>): ReadStream {
  return createReadStream(message.path, { start: 0, end: message.size - 1 });
}
