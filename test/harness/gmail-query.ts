// The part of Gmail's search syntax (users.messages.list `q`) the emulator
// models, strictly enough that a query built by pasting text unescaped goes
// wrong as it does at Google: terms separated by white space are ANDed, `OR`
// between two terms and `{a b}` are alternatives, `( )` groups, `-` negates,
// "double quotes" make one phrase (Gmail has no escape inside them),
// `rfc822msgid:ID` (angle brackets ignored) and `in:anywhere|inbox|spam|trash`
// are operators, and any other word or phrase is a full-text term. An
// operator the emulator does not know is refused (HTTP 400) rather than guessed.

export interface Searchable {
  rfc822MessageId?: string;
  labelIds: string[];
  raw: Buffer;
}

type Node = { and: Node[] } | { or: Node[] } | { not: Node } | { op: string; value: string } | { text: string };

export class QueryError extends Error {}

type Token = { kind: 'word' | 'phrase'; text: string } | { kind: '(' | ')' | '{' | '}' | 'OR' | '-' };

function tokenize(q: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < q.length) {
    const c = q[i]!;
    if (/\s/.test(c)) i++;
    else if ('(){}'.includes(c) || (c === '-' && i + 1 < q.length && !/\s/.test(q[i + 1]!))) {
      out.push({ kind: c as '(' });
      i++;
    } else {
      // A word runs to white space or a bracket; a quote inside it opens a phrase that runs to the next quote.
      let text = '';
      const phrase = c === '"';
      while (i < q.length && !/\s/.test(q[i]!) && !'(){}'.includes(q[i]!)) {
        if (q[i] === '"') {
          const close = q.indexOf('"', i + 1);
          const end = close < 0 ? q.length : close;
          text += q.slice(i + 1, end);
          i = end + 1;
        } else text += q[i++];
      }
      out.push(text === 'OR' && !phrase ? { kind: 'OR' } : { kind: phrase ? 'phrase' : 'word', text });
    }
  }
  return out;
}

export function parseQuery(q: string): Node {
  const tokens = tokenize(q);
  let pos = 0;
  const unit = (): Node => {
    const t = tokens[pos++];
    if (!t) throw new QueryError('query ends early');
    if (t.kind === '-') return { not: unit() };
    if (t.kind === '(' || t.kind === '{') {
      const close = t.kind === '(' ? ')' : '}';
      const items: Node[] = [];
      while (tokens[pos] && tokens[pos]!.kind !== close) items.push(alternatives());
      pos++;
      return t.kind === '(' ? { and: items } : { or: items };
    }
    if (t.kind === 'word') {
      const colon = t.text.indexOf(':');
      if (colon > 0) return { op: t.text.slice(0, colon).toLowerCase(), value: t.text.slice(colon + 1) };
      return { text: t.text };
    }
    if (t.kind === 'phrase') return { text: t.text };
    throw new QueryError(`unexpected ${t.kind}`);
  };
  const alternatives = (): Node => {
    const items = [unit()];
    while (tokens[pos]?.kind === 'OR') {
      pos++;
      items.push(unit());
    }
    return items.length === 1 ? items[0]! : { or: items };
  };
  const items: Node[] = [];
  while (pos < tokens.length) items.push(alternatives());
  return { and: items };
}

export function matches(node: Node, m: Searchable): boolean {
  if ('and' in node) return node.and.every((n) => matches(n, m));
  if ('or' in node) return node.or.some((n) => matches(n, m));
  if ('not' in node) return !matches(node.not, m);
  if ('text' in node) return m.raw.toString('latin1').toLowerCase().includes(node.text.toLowerCase());
  if (node.op === 'rfc822msgid') return m.rfc822MessageId !== undefined && m.rfc822MessageId === node.value.replace(/^<|>$/g, '');
  if (node.op === 'in') {
    const where = node.value.toLowerCase().replace(/[^a-z]/g, '');
    if (where === 'anywhere') return true;
    if (['inbox', 'spam', 'trash'].includes(where)) return m.labelIds.includes(where.toUpperCase());
  }
  throw new QueryError(`The emulator does not model the search operator ${JSON.stringify(`${node.op}:${node.value}`)}`);
}
