// Canonical mailbox addresses for the exclusion rules: the same mailbox written
// two ways compares equal (`"ceo"@Corp.Example.com` is `ceo@corp.example.com`).

/** dot-atom of RFC 5322 (with UTF-8, RFC 6531): what a local part needs no quotes for. */
const DOT_ATOM = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\u{10FFFF}]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\u{10FFFF}]+)*$/u;

/**
 * The canonical form of an envelope address: the domain lower-cased without a
 * trailing dot, a quoted local part unquoted (quoted pairs resolved) when it
 * needs no quotes, the local part otherwise as written (globs ignore case).
 */
export function canonicalAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 0) return address;
  let local = address.slice(0, at);
  const domain = address.slice(at + 1).toLowerCase().replace(/\.$/, '');
  if (local.length >= 2 && local.startsWith('"') && local.endsWith('"')) {
    const inner = local.slice(1, -1).replace(/\\(.)/gu, '$1');
    local = DOT_ATOM.test(inner) ? inner : `"${inner}"`;
  }
  return `${local}@${domain}`;
}
