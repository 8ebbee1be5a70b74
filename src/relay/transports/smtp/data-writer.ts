// The DATA of a transaction: the body dot-stuffed with indexOf over "\r\n."
// and written as slices of the original bytes, corked into one writev; a
// streamed body (no cached copy) is read from the spool file, bytes [0, size)
// only, with the socket's backpressure respected.
import type { Socket } from 'node:net';
import { messageFileStream } from '../../spool/queue-file.js';
import type { SpooledMessage } from '../../types.js';

/** The message bytes: `body` when cached, else bytes [0, size) of `path`. */
export type MessageSource = Pick<SpooledMessage, 'body' | 'path' | 'size'>;

const CRLF_DOT = Buffer.from('\r\n.');
const DOT = Buffer.from('.');
const CR = 13;
const LF = 10;

/** Dot-stuffing state across chunks: how much of a CRLF the bytes so far end with (2: at a line start). */
export interface StuffState {
  crlf: 0 | 1 | 2;
}

/**
 * Appends `chunk` to `parts` as slices, with a "." inserted before every "."
 * that starts a line (RFC 5321 4.5.2), also when the CRLF before it ended the
 * previous chunk.
 */
export function dotStuff(chunk: Buffer, st: StuffState, parts: Buffer[]): void {
  if (chunk.length === 0) return;
  let from = 0;
  const stuffAt = (i: number) => {
    if (i > from) parts.push(chunk.subarray(from, i));
    parts.push(DOT);
    from = i;
  };
  if (st.crlf === 2 && chunk[0] === DOT[0]) stuffAt(0);
  else if (st.crlf === 1 && chunk[0] === LF && chunk[1] === DOT[0]) stuffAt(1);
  for (let i = chunk.indexOf(CRLF_DOT); i >= 0; i = chunk.indexOf(CRLF_DOT, i + 3)) stuffAt(i + 2);
  if (from < chunk.length) parts.push(from === 0 ? chunk : chunk.subarray(from));
  const n = chunk.length;
  if (n >= 2 && chunk[n - 2] === CR && chunk[n - 1] === LF) st.crlf = 2;
  else if (chunk[n - 1] === CR) st.crlf = 1;
  else st.crlf = n === 1 && chunk[0] === LF && st.crlf === 1 ? 2 : 0;
}

/** The end of the data: the last line gets its CRLF if it had none, then ".". */
export const endOfData = (st: StuffState) => Buffer.from(st.crlf === 2 ? '.\r\n' : '\r\n.\r\n');

/** Where the data goes: the connection's socket, and whether the connection already failed. */
export interface DataSink {
  socket: Socket;
  /** Resolves on the socket's drain, rejects when the connection fails first. */
  drained(): Promise<void>;
  failure(): Error | undefined;
}

/** Writes the message (dot-stuffed) and the final "."; throws when the spool file is short or the connection fails. */
export async function writeData(sink: DataSink, msg: MessageSource, truncated: (detail: string) => Error): Promise<void> {
  const st: StuffState = { crlf: 2 };
  const parts: Buffer[] = [];
  if (msg.body) {
    dotStuff(msg.body, st, parts);
    parts.push(endOfData(st));
    writeParts(sink.socket, parts);
    return;
  }
  if (msg.size > 0) {
    const stream = messageFileStream(msg);
    try {
      let read = 0;
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        const failure = sink.failure();
        if (failure) throw failure;
        read += chunk.length;
        dotStuff(chunk, st, parts);
        if (!writeParts(sink.socket, parts.splice(0))) await sink.drained();
      }
      // Ending the data now would deliver a truncated message.
      if (read !== msg.size) throw truncated(`${msg.path} holds ${read} bytes, not ${msg.size}`);
    } finally {
      stream.destroy();
    }
  }
  writeParts(sink.socket, [endOfData(st)]);
}

/** One writev for all parts; false when the socket buffer is full. */
function writeParts(socket: Socket, parts: Buffer[]): boolean {
  socket.cork();
  let ok = true;
  for (const p of parts) ok = socket.write(p);
  socket.uncork();
  return ok;
}
