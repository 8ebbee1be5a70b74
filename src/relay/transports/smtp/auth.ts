// SASL authentication to the next hop (Exchange's connector or smtp-relay.gmail.com).
import { isLoopbackHost } from '../../../lib/ip.js';
import { replyText, type SmtpReply } from '../../../lib/smtp-reply.js';
import { SmtpSessionError } from './options.js';

/** AUTH PLAIN or LOGIN; only over TLS or to a loopback host. Throws SmtpSessionError (the scheduler defers). */
export async function authenticate(
  command: (line: string, phase?: string) => Promise<SmtpReply>,
  auth: { user: string; pass: string },
  s: { ext: Map<string, string>; secure: boolean; host: string; where: string },
): Promise<void> {
  if (!s.secure && !isLoopbackHost(s.host)) throw new SmtpSessionError(`not sending credentials to ${s.where} without TLS`);
  const mechanisms = (s.ext.get('AUTH') ?? '').toUpperCase().split(' ');
  const b64 = (text: string) => Buffer.from(text).toString('base64');
  let r: SmtpReply;
  if (mechanisms.includes('PLAIN')) {
    r = await command(`AUTH PLAIN ${b64(`\0${auth.user}\0${auth.pass}`)}`, 'after AUTH');
  } else if (mechanisms.includes('LOGIN')) {
    r = await command('AUTH LOGIN');
    if (r.code === 334) r = await command(b64(auth.user), 'after AUTH LOGIN user name');
    if (r.code === 334) r = await command(b64(auth.pass), 'after AUTH LOGIN password');
  } else {
    throw new SmtpSessionError(`${s.where} offers no AUTH PLAIN or LOGIN (AUTH ${s.ext.get('AUTH') ?? 'not offered'})`);
  }
  if (r.code !== 235) throw new SmtpSessionError(`SASL authentication with ${s.where} failed: ${replyText(r)}`);
}
