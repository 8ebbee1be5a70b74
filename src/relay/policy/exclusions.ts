// Pure: which exclusion rule keeps a message (for one recipient) out of the
// backup. Addresses compare in canonical form, header values as a mail client
// reads them (header-values.ts), globs in linear time (glob.ts). What cannot be
// evaluated fully is treated as excluded, with the reason as the rule.
import type { MailContinuitySpec } from '../../api/v1alpha1/mailcontinuity.js';
import { canonicalAddress } from './address.js';
import { codePoints, compileGlob, matchCompiled, MAX_MATCH_CHARS } from './glob.js';
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

/** The header names (lower case) that exclusion rules look at: what inbound must keep. */
export function headerNamesOfInterest(rules: readonly ExcludeRule[]): Set<string> {
  return new Set(rules.flatMap((r) => (r.header ? [r.header.name.toLowerCase()] : [])));
}

type Readings = Map<string, Array<number[] | 'too-long'>>;
const prepared = new WeakMap<object, Readings>();

/** Every header's readings as code points, once per header list. */
function readings(headers: MessageFacts['headers']): Readings {
  let r = prepared.get(headers);
  if (r) return r;
  r = new Map();
  for (const [name, raw] of headers) {
    const list = r.get(name) ?? [];
    if (raw.length > MAX_MATCH_CHARS) list.push('too-long');
    else for (const v of readingsOf(raw)) list.push(codePoints(v));
    r.set(name, list);
  }
  prepared.set(headers, r);
  return r;
}

const globMatches = (glob: string, address: string) => matchCompiled(compileGlob(glob), codePoints(canonicalAddress(address)));

/** The first exclusion whose every matcher matches this message and recipient (or the reason to fail closed). */
export function matchExclusion(rules: readonly ExcludeRule[], facts: MessageFacts, recipient: string): Exclusion | undefined {
  const unevaluated = facts.headers.find(([n]) => n === UNEVALUATED);
  if (unevaluated) return { rule: `unevaluated: ${unevaluated[1]}` };
  for (const rule of rules) {
    if (rule.sender !== undefined && !globMatches(rule.sender, facts.mailFrom)) continue;
    if (rule.recipient !== undefined && !globMatches(rule.recipient, recipient)) continue;
    if (rule.header === undefined) return { rule: rule.name };
    const values = readings(facts.headers).get(rule.header.name.toLowerCase()) ?? [];
    const glob = compileGlob(rule.header.value);
    if (values.includes('too-long')) return { rule: `${rule.name} (a ${rule.header.name} value over ${MAX_MATCH_CHARS} characters, not evaluated)` };
    if (values.some((v) => v !== 'too-long' && matchCompiled(glob, v))) return { rule: rule.name };
  }
  return undefined;
}
