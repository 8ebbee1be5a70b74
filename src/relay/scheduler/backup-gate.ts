// The last look before a copy leaves for the backup: every pending recipient is
// decided again under the rules the relay runs now, on the header section read
// from the bytes that will be delivered (the body in memory, or the queue
// file). A rule added after the message was spooled (the relay restarts with
// its new config) so stops copies still waiting, whatever header it names.
// A section that cannot be read counts as not evaluated: no copy. A message
// this process took itself was decided under the rules it runs: not again
// (gateNeeded), unless a rule names a field the relay writes.
import { open } from 'node:fs/promises';
import { HeaderCollector, parseHeaders, policyHeaders, type HeaderSection } from '../inbound/headers.js';
import { headerNamesOfInterest, matchExclusion, UNEVALUATED, type ExcludeRule } from '../policy/exclusions.js';
import type { MessageState } from '../spool/state.js';
import type { SpooledMessage } from '../types.js';

const CHUNK = 64 * 1024;

/** The header section of the message as it will be delivered. */
async function readHeaderSection(message: Pick<SpooledMessage, 'path' | 'size' | 'body'>): Promise<HeaderSection> {
  const collector = new HeaderCollector();
  if (message.body) return collector.push(message.body.subarray(0, message.size)) ?? collector.end();
  const file = await open(message.path, 'r');
  try {
    for (let at = 0; at < message.size; at += CHUNK) {
      const buf = Buffer.alloc(Math.min(CHUNK, message.size - at));
      const { bytesRead } = await file.read(buf, 0, buf.length, at);
      if (bytesRead === 0) break;
      const section = collector.push(buf.subarray(0, bytesRead));
      if (section) return section;
    }
    return collector.end();
  } finally {
    await file.close();
  }
}

/** Header fields the relay itself writes into a message (its Received line; a Message-ID when the sender gave none). */
const RELAY_WRITTEN = new Set(['received', 'message-id']);

/**
 * Whether a copy must be decided again before it leaves. A message this relay
 * process took was decided under the rules it runs (they change only with a
 * restart) on the fields its intake kept from the same bytes: deciding again
 * repeats that work, unless a rule names a field the relay writes itself.
 * Messages read from the spool at start were decided by an earlier process.
 */
export function gateNeeded(rules: readonly ExcludeRule[], decidedByThisProcess: boolean): boolean {
  return !decidedByThisProcess || rules.some((r) => r.header !== undefined && RELAY_WRITTEN.has(r.header.name.toLowerCase()));
}

/** The fields the current rules look at, read again from the message (UNEVALUATED when it cannot be read). */
export async function currentPolicyHeaders(rules: readonly ExcludeRule[], message: SpooledMessage): Promise<Array<[string, string]>> {
  try {
    const section = await readHeaderSection(message);
    return policyHeaders(parseHeaders(section.block), section.complete, headerNamesOfInterest(rules));
  } catch (e) {
    return [[UNEVALUATED, `header section unreadable: ${(e as Error).message}`]];
  }
}

/**
 * Re-decides the recipients about to be copied under the current rules (pure).
 * The excluded ones are recorded in the state (as the first decision would) and
 * returned by rule; the rest may leave.
 */
export function gateBackupCopies(
  rules: readonly ExcludeRule[],
  st: MessageState,
  headers: ReadonlyArray<readonly [string, string]>,
  recipients: readonly string[],
  now: number,
): { send: string[]; excluded: Map<string, string[]> } {
  const send: string[] = [];
  const excluded = new Map<string, string[]>();
  for (const rcpt of recipients) {
    const hit = matchExclusion(rules, { mailFrom: st.mailFrom, headers, receivedAt: st.receivedAt }, rcpt);
    if (!hit) {
      send.push(rcpt);
      continue;
    }
    st.deliveries.backup!.recipients[rcpt] = { status: 'excluded', rule: hit.rule, at: now };
    excluded.set(hit.rule, [...(excluded.get(hit.rule) ?? []), rcpt]);
  }
  return { send, excluded };
}
