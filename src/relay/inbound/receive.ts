// Postfix's cleanup for one message: the Received header, the header section
// (parsed for the policy, a Message-ID added when missing), newlines
// normalised, the size enforced, the queue file written and committed, the
// delivery plan recorded, and the message handed to the scheduler. The reply
// is 250 only once the message is on stable storage.
import type { Logger } from 'pino';
import type { SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import type { RelayMetrics } from '../metrics.js';
import type { Spool } from '../spool/spool.js';
import { SpoolFullError, type MessageState } from '../spool/state.js';
import type { MessageWriter } from '../spool/writer.js';
import type { SpooledMessage } from '../types.js';
import { argOf } from './access.js';
import type { Clients } from './clients.js';
import { HeaderCollector, messageIdOf, parseHeaders, policyHeaders, type HeaderSection } from './headers.js';
import { NewlineNormaliser } from './newlines.js';
import { SmtpError, type Reject } from './smtp-error.js';

export interface ReceiveDeps {
  spool: Pick<Spool, 'create'>;
  /** Hand-over to delivery. */
  queue: { add(state: MessageState, opts: { message: SpooledMessage }): void };
  clients: Clients;
  hostname: string;
  maxBytes: number;
  instance: string;
  /** Header names the exclusion rules look at (kept in the queue file's envelope). */
  interesting: Set<string>;
  metrics: RelayMetrics;
  reject: Reject;
  log: Logger;
}

/** Receives one message's DATA; resolves to the 250 text, rejects with the SmtpError to answer. */
export async function receive(d: ReceiveDeps, stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
  // A client that disconnects (or times out) mid-DATA: end the stream, drop the partial file.
  const onGone = () => stream.destroy(new Error('client went away during DATA'));
  const conn = d.clients.conn(session.id);
  if (conn?.left) onGone();
  else if (conn) conn.onLeave = onGone;
  try {
    return await receiveMessage(d, stream, session);
  } finally {
    if (conn) delete conn.onLeave;
  }
}

async function receiveMessage(d: ReceiveDeps, stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
  let writer: MessageWriter;
  try {
    writer = await d.spool.create();
  } catch (e) {
    await drain(stream).catch(() => undefined);
    d.reject('spool-full');
    d.log.error({ err: (e as Error).message }, 'cannot create spool file');
    throw new SmtpError(452, '4.3.1 Insufficient system storage');
  }
  await writer.write(Buffer.from(receivedHeader(session, d.hostname, writer.id, new Date()), 'utf8'));
  try {
    return await receiveData(d, stream, session, writer);
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

/** Postfix's Received header (the relay does no reverse lookups: the name is "unknown"). */
export function receivedHeader(session: SMTPServerSession, hostname: string, id: string, now: Date): string {
  const rcpts = session.envelope.rcptTo.map((r) => r.address);
  const proto = session.secure ? 'ESMTPS' : 'ESMTP';
  const utf8 = session.envelope.mailFrom && argOf(session.envelope.mailFrom.args, 'SMTPUTF8');
  return (
    `Received: from ${clean(session.hostNameAppearsAs ?? '')} (${clientName(session.clientHostname)} [${clean(session.remoteAddress)}])\r\n` +
    `\tby ${clean(hostname)} (mail-continuity-relay) with ${utf8 ? 'UTF8' + proto.slice(1) : proto} id ${id}` +
    (rcpts.length === 1 ? `\r\n\tfor <${rcpts[0]}>` : '') +
    `; ${rfc5322Date(now)}\r\n`
  );
}

async function receiveData(d: ReceiveDeps, stream: SMTPServerDataStream, session: SMTPServerSession, writer: MessageWriter): Promise<string> {
  const rcpts = session.envelope.rcptTo.map((r) => r.address);
  const mailFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
  const norm = new NewlineNormaliser();
  let inBytes = 0;
  let over = false;
  // Dropped once the section is decided: it holds the first chunks of the message.
  let collector: HeaderCollector | undefined = new HeaderCollector();
  let kept: Array<[string, string]> = [];
  let messageId: string | undefined;

  const flushHeader = async (section: HeaderSection) => {
    collector = undefined;
    const headers = parseHeaders(section.block);
    kept = policyHeaders(headers, section.complete, d.interesting);
    messageId = messageIdOf(headers);
    if (!messageId) {
      messageId = `${writer.id}@${d.hostname}`;
      await writer.write(Buffer.from(`Message-ID: <${messageId}>\r\n`));
    }
    await writer.write(section.bytes);
  };

  const take = async (raw: Buffer) => {
    inBytes += raw.length;
    if (over || inBytes > d.maxBytes) {
      over = true;
      return;
    }
    const chunk = norm.push(raw);
    if (collector) {
      const section = collector.push(chunk);
      if (section) await flushHeader(section);
    } else await writer.write(chunk);
  };
  // Not `for await (const raw of stream)`: a session stalled in the middle of DATA would hold
  // its last chunk (a whole socket read, up to 64 KiB) in the loop's frame while it waits.
  const chunks = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  for (;;) {
    let next: IteratorResult<Buffer> | undefined = await chunks.next();
    if (next.done) break;
    await take(next.value);
    next = undefined;
  }
  const tail = norm.end();
  if (collector) {
    if (tail.length) collector.push(tail);
    await flushHeader(collector.end());
  } else if (tail.length) await writer.write(tail);

  if (over || stream.sizeExceeded) {
    await writer.abort();
    d.reject('size');
    throw new SmtpError(552, `5.3.4 Message size exceeds fixed maximum message size (${d.maxBytes} bytes)`);
  }
  if (norm.bare > 0) d.metrics.normalisedNewlines.inc({ instance: d.instance });
  let state: MessageState;
  let message: SpooledMessage;
  try {
    ({ state, message } = await d.clients.whileBusy(session.id, () => writer.commit({
      mailFrom,
      rcptTo: rcpts,
      messageId,
      receivedAt: Date.now(),
      client: { address: session.remoteAddress, helo: clean(session.hostNameAppearsAs ?? '') },
      headers: kept,
      // The delivery plan: every recipient pending at the primary; the scheduler adds the backup's.
      deliveries: { primary: { recipients: Object.fromEntries(rcpts.map((r) => [r, { status: 'pending' as const }])), attempts: 0, nextAttemptAt: 0 } },
    })));
  } catch (e) {
    d.reject('spool-full');
    d.log.error({ err: (e as Error).message, code: e instanceof SpoolFullError ? e.causeCode : undefined }, 'message not accepted: spool write failed');
    throw new SmtpError(452, '4.3.1 Insufficient system storage');
  }
  // On disk from here on: whatever happens next, the answer is 250 (a restart resumes from the spool).
  d.metrics.accepted.inc({ instance: d.instance });
  d.metrics.commits.inc({ instance: d.instance });
  d.log.info({ id: state.id, messageId, from: mailFrom, rcpts: rcpts.length, size: state.size, client: session.remoteAddress, bareNewlines: norm.bare || undefined }, 'queued');
  try {
    d.queue.add(state, { message });
  } catch (e) {
    d.log.error({ id: state.id, err: (e as Error).message }, 'could not schedule a spooled message (it stays in the spool until restart)');
  }
  return `2.0.0 Ok: queued as ${state.id}`;
}

async function drain(stream: SMTPServerDataStream): Promise<void> {
  for await (const _ of stream) {
    // discard
  }
}

/** Postfix's form: the reverse name, or "unknown" (the relay does no reverse lookups). */
const clientName = (name: string | undefined) => (!name || name.startsWith('[') ? 'unknown' : clean(name));

const clean = (s: string, max = 255) => s.replace(/[^\x21-\x7e]/g, '').slice(0, max) || 'unknown';

function rfc5322Date(d: Date): string {
  return d.toUTCString().replace('GMT', '+0000');
}
