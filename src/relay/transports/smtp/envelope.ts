// The envelope as it goes on the wire, and what a reply means for a recipient.
import { domainToASCII } from 'node:url';
import type { SmtpReply } from '../../../lib/smtp-reply.js';
import { replyText } from '../../../lib/smtp-reply.js';
import type { RecipientOutcome } from '../../types.js';

export const is2xx = (r: SmtpReply) => r.code >= 200 && r.code < 300;

/** 5xx failed, anything else deferred; the detail is the reply. `scope` 'recipient': the reply to this recipient's RCPT TO. */
export function outcome(recipient: string, r: SmtpReply, scope?: 'recipient'): RecipientOutcome {
  const detail = replyText(r).slice(0, 500);
  if (r.code >= 500 && r.code < 600) return { recipient, status: 'failed', detail };
  return scope ? { recipient, status: 'deferred', detail, scope } : { recipient, status: 'deferred', detail };
}

/** Non-ASCII addresses need SMTPUTF8 (RFC 6531). */
export const needsUtf8 = (address: string) => Buffer.byteLength(address) !== address.length;

/**
 * The address as sent: the domain lower-cased, an internationalised one as its
 * A-label (xn--), so only a non-ASCII local part needs SMTPUTF8 (nodemailer
 * did the same).
 */
export function wireAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 0) return address;
  const domain = address.slice(at + 1).toLowerCase();
  return `${address.slice(0, at + 1)}${needsUtf8(domain) ? domainToASCII(domain) || domain : domain}`;
}

/** What the server's extensions allow of a message, before anything is sent. */
export interface Envelope {
  from: string;
  /** Recipient -> address on the wire, for those that can be sent. */
  wire: Map<string, string>;
  /** Outcomes already known (refused before sending: line breaks, size, SMTPUTF8). */
  out: Map<string, RecipientOutcome>;
}

/** Checks the envelope against the server's SIZE and SMTPUTF8; `where` names the server in details. */
export function prepareEnvelope(sender: string, to: string[], size: number, ext: Map<string, string>, where: string): Envelope {
  const from = wireAddress(sender);
  const out = new Map<string, RecipientOutcome>();
  const wire = new Map<string, string>();
  const failAll = (detail: string) => {
    for (const r of to) out.set(r, { recipient: r, status: 'failed', detail: detail.slice(0, 500) });
    return { from, wire, out };
  };
  if ([from, ...to].some((a) => /[\r\n]/.test(a))) return failAll('501 5.1.3 bad address syntax (line break)');
  const limit = Number(ext.get('SIZE'));
  if (limit > 0 && size > limit) return failAll(`552 5.3.4 message size ${size} exceeds the size limit ${limit} of ${where}`);
  const utf8 = ext.has('SMTPUTF8');
  if (!utf8 && needsUtf8(from)) return failAll(`553 5.6.7 ${where} does not support SMTPUTF8, needed for the sender ${from}`);
  for (const r of to) {
    const w = wireAddress(r);
    if (!utf8 && needsUtf8(w)) out.set(r, { recipient: r, status: 'failed', detail: `553 5.6.7 ${where} does not support SMTPUTF8, needed for this recipient` });
    else wire.set(r, w);
  }
  return { from, wire, out };
}
