// The Gmail search query of the duplicate check: one `rfc822msgid:` term with
// the Message-ID in double quotes, so nothing in it reads as Gmail search syntax
// (`<a OR in:anywhere>` would otherwise find every message and skip a
// legitimate import). Gmail has no escape inside quotes: an ID that holds a
// quote, white space or a control character is not searched at all, and the
// check answers "cannot tell" (the import goes ahead: a possible duplicate,
// never a message kept from the backup).

/** The `q` for users.messages.list, or undefined when the ID cannot be searched safely. */
export function dedupQuery(messageId: string): string | undefined {
  const id = messageId.replace(/^<|>$/g, '');
  if (id === '' || !/^[\x21-\x7e\u0080-\u{10ffff}]+$/u.test(id) || id.includes('"')) return undefined;
  return `rfc822msgid:"${id}"`;
}
