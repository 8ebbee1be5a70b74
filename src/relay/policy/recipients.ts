// Recipient verification (Postfix's local_recipient_maps / relay_recipient_maps):
// the addresses that exist, from spec.relay.recipients (a ConfigMap the
// operator mounts). One address per line, "#" starts a comment, "@domain"
// accepts every local part of that domain; compared case-insensitively on the
// canonical address (address.ts). Pure: the relay reads the file and asks.
import { canonicalAddress } from './address.js';

export interface RecipientList {
  addresses: ReadonlySet<string>;
  domains: ReadonlySet<string>;
}

/** Parses the list; an entry that is not an address or "@domain" is an error naming its line. */
export function parseRecipientList(text: string, source: string): RecipientList {
  const addresses = new Set<string>();
  const domains = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) return;
    if (/\s/.test(line) || !/^[^@]*@[^@]+$/.test(line) || line.endsWith('@')) {
      throw new Error(`${source} line ${i + 1}: "${line.slice(0, 100)}" is not an address or "@domain" (one per line, # for comments)`);
    }
    if (line.startsWith('@')) domains.add(line.slice(1).toLowerCase().replace(/\.$/, ''));
    else addresses.add(canonicalAddress(line).toLowerCase());
  });
  return { addresses, domains };
}

/** True when the list has the recipient (its address, or its whole domain). */
export function listHas(list: RecipientList, recipient: string): boolean {
  const a = canonicalAddress(recipient).toLowerCase();
  return list.addresses.has(a) || list.domains.has(a.slice(a.lastIndexOf('@') + 1));
}
