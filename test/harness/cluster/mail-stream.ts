// Mail sent one message after another (swaks, the real client) for as long as
// a disruption lasts, with every reply recorded as the sender saw it: the
// tests then check that each message that got `250` arrived, and that the
// others saw only 4xx or a refused connection.
import { swaks } from '../smtp-tools.js';

export interface SendResult {
  id: string;
  /** The reply to the end of DATA, or the last reply seen ("" when the connection failed). */
  reply: string;
  accepted: boolean;
}

export interface MailStream {
  results: SendResult[];
  /** Ends the stream after the message in flight; resolves with every result. */
  stop(): Promise<SendResult[]>;
}

export function streamMail(o: {
  smtp: { host: string; port: number };
  to: string;
  prefix: string;
  /** Pause between messages (default none). */
  gapMs?: number;
}): MailStream {
  const results: SendResult[] = [];
  let running = true;
  const loop = (async () => {
    for (let n = 1; running; n++) {
      const id = `${o.prefix}-${n}@partner.example.net`;
      const r = await swaks({
        host: o.smtp.host,
        port: o.smtp.port,
        to: o.to,
        headers: [`Message-ID: <${id}>`, `Subject: ${o.prefix} #${n}`],
        extra: ['--timeout', '10'],
        timeoutMs: 30_000,
      });
      const dataReply = r.code === 0 ? (r.replies.at(-2) ?? '') : (r.replies.at(-1) ?? '');
      results.push({ id, reply: dataReply, accepted: r.code === 0 && /^250 /.test(dataReply) });
      if (o.gapMs) await new Promise((res) => setTimeout(res, o.gapMs));
    }
  })();
  return {
    results,
    async stop() {
      running = false;
      await loop;
      return results;
    },
  };
}

/** Replies that are not `250` and not a temporary refusal: a sender would bounce the message. */
export function permanentFailures(results: SendResult[]): SendResult[] {
  return results.filter((r) => !r.accepted && /^5/.test(r.reply));
}
