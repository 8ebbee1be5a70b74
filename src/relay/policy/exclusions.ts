// Pure: which exclusion rule keeps a message (for one recipient) out of the
// backup. Addresses compare in canonical form, header values as a mail client
// reads them (header-values.ts), globs in linear time (glob.ts). What cannot be
// evaluated fully is treated as excluded, with the reason as the rule.
import type { MailContinuitySpec } from '../../api/v1alpha1/mailcontinuity.js';
import { canonicalAddress } from './address.js';
import { compileGlob, MatchValue, matchValue, MAX_MATCH_CHARS, type Glob } from './glob.js';
import { readingsOf } from './header-values.js';

export type ExcludeRule = MailContinuitySpec['policy']['exclude'][number];

/** What the policy needs to know about a message. */
export interface MessageFacts {
  mailFrom: string;
  /**
   * Header fields as [lower-case name, unfolded raw value], every occurrence.
   * Only the names exclusion rules ask for need be present, plus UNEVALUATED
   * when the intake could not read the whole header section.
   */
  headers: ReadonlyArray<readonly [string, string]>;
  /** Epoch ms of the 250. */
  receivedAt: number;
}

/**
 * A pseudo header (no real field name contains ":") the intake records when the
 * header section could not be evaluated whole; its value says why. Such a
 * message never gets a copy at the backup, whatever the rules.
 */
export const UNEVALUATED = ':unevaluated';

/** The exclusion that applies: a rule's name, or "unevaluated: <why>" when failing closed. */
export interface Exclusion {
  rule: string;
}

/**
 * The header fields whose addresses a sender rule matches besides the envelope
 * sender (MAIL FROM): whoever the message names as its author. Fail closed: a
 * message that says it is from HR is kept out whatever envelope it came with
 * (forwarding, lists, bounces with an empty MAIL FROM).
 */
export const SENDER_HEADERS = ['from', 'sender'] as const;

/** The header names (lower case) that exclusion rules look at: what inbound must keep. */
export function headerNamesOfInterest(rules: readonly ExcludeRule[]): Set<string> {
  return new Set(rules.flatMap((r) => [...(r.header ? [r.header.name.toLowerCase()] : []), ...(r.sender !== undefined ? SENDER_HEADERS : [])]));
}

/**
 * Every token shaped like local@domain in any reading of a From: or Sender:
 * value (decoded, comments dropped, quotes removed), canonical: more than an
 * address parser would find (a display name that looks like an address counts
 * too), never less. 'too-long': a value over MAX_MATCH_CHARS (the rule applies).
 */
const STOP = new Set([...' \t<>()[],;:"@']);
/** The local@domain tokens of `s`, in one pass (each character looked at at most three times). */
export function addressTokens(s: string): string[] {
  const out: string[] = [];
  for (let at = s.indexOf('@'); at >= 0; at = s.indexOf('@', at + 1)) {
    let from = at;
    while (from > 0 && !STOP.has(s[from - 1]!)) from--;
    let to = at + 1;
    while (to < s.length && !STOP.has(s[to]!)) to++;
    while (to > at + 1 && s[to - 1] === '.') to--; // the end of a sentence, not of the domain
    if (from < at && to > at + 1) out.push(s.slice(from, to));
  }
  return out;
}

function senderAddresses(headers: MessageFacts['headers']): MatchValue[] | 'too-long' {
  const out = new Map<string, MatchValue>();
  for (const [name, raw] of headers) {
    if (!(SENDER_HEADERS as readonly string[]).includes(name)) continue;
    if (raw.length > MAX_MATCH_CHARS) return 'too-long';
    for (const reading of readingsOf(raw)) {
      for (const token of addressTokens(reading)) {
        const a = canonicalAddress(token);
        if (!out.has(a)) out.set(a, new MatchValue(a));
      }
    }
  }
  return [...out.values()];
}

/** A message's header readings, prepared once per header list, and the header matches already made. */
interface Prepared {
  readings: Map<string, Array<MatchValue | 'too-long'>>;
  /** The addresses of From: and Sender:, read when a sender rule first asks. */
  senders?: MatchValue[] | 'too-long';
  /** "name\0glob" -> the answer, so more recipients do not match again. */
  answers: Map<string, HeaderAnswer>;
}
type HeaderAnswer = 'match' | 'no-match' | 'too-long' | 'too-costly';

/** Automaton steps (value characters times 32-character words) one message may cost: beyond, fail closed. */
export const MAX_MATCH_STEPS = 1_000_000;

const prepared = new WeakMap<object, Prepared>();

function prepare(headers: MessageFacts['headers']): Prepared {
  let p = prepared.get(headers);
  if (p) return p;
  p = { readings: new Map(), answers: new Map() };
  const seen = new Set<string>();
  for (const [name, raw] of headers) {
    const key = `${name}:${raw}`;
    if (seen.has(key)) continue; // a repeated field with the same value reads the same
    seen.add(key);
    const list = p.readings.get(name) ?? [];
    if (raw.length > MAX_MATCH_CHARS) list.push('too-long');
    else for (const v of readingsOf(raw)) list.push(new MatchValue(v));
    p.readings.set(name, list);
  }
  prepared.set(headers, p);
  return p;
}

/** Whether any reading of any occurrence of the field matches; the step budget is shared by the message's evaluations. */
function headerAnswer(p: Prepared, name: string, glob: Glob, key: string, budget: { steps: number }): HeaderAnswer {
  let answer = p.answers.get(key);
  if (answer) return answer;
  answer = 'no-match';
  for (const v of p.readings.get(name) ?? []) {
    if (v === 'too-long') answer = 'too-long';
    else {
      if (!glob.literals) budget.steps += v.codePoints.length * glob.segments.reduce((w, s) => w + s.wild.length, 0);
      if (budget.steps > MAX_MATCH_STEPS) answer = 'too-costly';
      else if (matchValue(glob, v)) answer = 'match';
    }
    if (answer !== 'no-match') break;
  }
  p.answers.set(key, answer);
  return answer;
}

const globMatches = (glob: string, address: string) => matchValue(compileGlob(glob), new MatchValue(canonicalAddress(address)));

/** A sender rule matches the envelope sender or any address of From: or Sender: (a value too long to read: it matches). */
function senderMatches(glob: string, facts: MessageFacts, p: Prepared): boolean {
  if (globMatches(glob, facts.mailFrom)) return true;
  const senders = (p.senders ??= senderAddresses(facts.headers));
  if (senders === 'too-long') return true;
  const g = compileGlob(glob);
  return senders.some((a) => matchValue(g, a));
}

/** The first exclusion whose every matcher matches this message and recipient (or the reason to fail closed). */
export function matchExclusion(rules: readonly ExcludeRule[], facts: MessageFacts, recipient: string): Exclusion | undefined {
  const unevaluated = facts.headers.find(([n]) => n === UNEVALUATED);
  if (unevaluated) return { rule: `unevaluated: ${unevaluated[1]}` };
  const p = prepare(facts.headers);
  const budget = { steps: 0 };
  for (const rule of rules) {
    if (rule.sender !== undefined && !senderMatches(rule.sender, facts, p)) continue;
    if (rule.recipient !== undefined && !globMatches(rule.recipient, recipient)) continue;
    if (rule.header === undefined) return { rule: rule.name };
    const name = rule.header.name.toLowerCase();
    const answer = headerAnswer(p, name, compileGlob(rule.header.value), `${name}\0${rule.header.value}`, budget);
    if (answer === 'match') return { rule: rule.name };
    if (answer === 'too-long') return { rule: `${rule.name} (a ${rule.header.name} value over ${MAX_MATCH_CHARS} characters, not evaluated)` };
    if (answer === 'too-costly') return { rule: `unevaluated: the rules' "?" globs cost over ${MAX_MATCH_STEPS} steps on this message's headers` };
  }
  return undefined;
}
