// spec.backup.gmail.addressMap: Exchange addresses rewritten to their Google
// Workspace mailboxes, for both backup methods (Gmail API and SMTP relay).

export interface AddressRule {
  from: string;
  to: string;
}

/**
 * Rewrites an Exchange address to its Workspace mailbox. The first matching
 * rule wins: a domain rule ("@corp.example.com" -> "@corp.example.org") keeps
 * the local part; an address rule matches the whole address (the domain case-
 * insensitively). Without a match the address is returned unchanged.
 */
export function mapAddress(addressMap: readonly AddressRule[], recipient: string): string {
  const at = recipient.lastIndexOf('@');
  if (at < 0) return recipient;
  const local = recipient.slice(0, at);
  const domain = recipient.slice(at + 1).toLowerCase();
  for (const rule of addressMap) {
    const ruleAt = rule.from.lastIndexOf('@');
    const ruleLocal = rule.from.slice(0, ruleAt);
    const ruleDomain = rule.from.slice(ruleAt + 1).toLowerCase();
    if (ruleDomain !== domain) continue;
    if (ruleLocal === '') return rule.to.startsWith('@') ? local + rule.to : rule.to;
    if (ruleLocal === local) return rule.to;
  }
  return recipient;
}
