import { describe, expect, it } from '@jest/globals';
import { createLogger, formatTextLine } from '../../src/lib/log.js';
import { statefulSet } from '../../src/operator/builders/statefulset.js';
import { parsedMailContinuity } from '../fixtures/mailcontinuity.js';

/** A logger writing into an array of lines, in one format. */
function capture(format: 'json' | 'text', level?: string) {
  const lines: string[] = [];
  const log = createLogger({ format, level, base: { component: 'relay' } }, { write: (s: string) => void lines.push(s) });
  return { log, lines };
}

describe('--log-format', () => {
  it('json: pino lines as before (numeric level, epoch-millisecond time), one object a line', () => {
    const { log, lines } = capture('json');
    log.info({ event: 'ready', smtpPort: 2525 }, 'relay ready');
    expect(lines).toHaveLength(1);
    const o = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(o).toMatchObject({ level: 30, component: 'relay', event: 'ready', smtpPort: 2525, msg: 'relay ready' });
    expect(typeof o.time).toBe('number');
  });

  it('text: ISO time, level name, message, then key=value; strings with spaces, quotes or "=" quoted', () => {
    const { log, lines } = capture('text');
    log.warn({ event: 'ready', smtpPort: 2525, reason: 'a b', q: 'x="y"', empty: '', ok: true, n: null, o: { a: [1] } }, 'relay ready');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARN {2}relay ready component=relay event=ready smtpPort=2525 reason="a b" q="x=\\"y\\"" empty="" ok=true n=null o=\{"a":\[1\]\}\n$/,
    );
  });

  it('text: an error as err="message" with its stack indented below; multi-line messages stay under their line', () => {
    const { log, lines } = capture('text');
    log.error({ err: new Error('connect ECONNREFUSED') }, 'probe failed\nsecond line');
    const [first, ...rest] = lines[0]!.trimEnd().split('\n');
    expect(first).toMatch(/ ERROR probe failed$/);
    expect(rest[0]).toBe('    second line component=relay err="connect ECONNREFUSED"');
    expect(rest[1]).toBe('    Error: connect ECONNREFUSED');
    expect(rest.slice(2).every((l) => l.startsWith('        at '))).toBe(true);
  });

  it('text and json honour the level', () => {
    for (const format of ['json', 'text'] as const) {
      const { log, lines } = capture(format, 'warn');
      log.info('hidden');
      log.debug('hidden');
      log.warn('shown');
      expect(lines).toHaveLength(1);
    }
    const { log, lines } = capture('text', 'debug');
    log.debug('shown');
    expect(lines[0]).toMatch(/ DEBUG shown component=relay\n$/);
  });

  it('formatTextLine passes what is not a JSON object unchanged, and names unknown levels by number', () => {
    expect(formatTextLine('plain text\n')).toBe('plain text\n');
    expect(formatTextLine('[1,2]\n')).toBe('[1,2]\n');
    expect(formatTextLine('{"time":0,"level":35,"msg":"m","k":"v"}')).toBe('1970-01-01T00:00:00.000Z 35    m k=v\n');
  });
});

describe('the relays log in the operator\'s format', () => {
  const args = (logFormat?: 'json' | 'text') => {
    const sts = statefulSet(parsedMailContinuity(), { defaultImage: 'img', configHash: 'h', logFormat }) as unknown as {
      spec: { template: { spec: { containers: { args: string[] }[] } } };
    };
    return sts.spec.template.spec.containers[0]!.args;
  };

  it('text: the relay container gets --log-format text; json (the default) leaves its arguments as they were', () => {
    expect(args('text')).toEqual(['relay', '--config', '/etc/mail-continuity/config/relay.yaml', '--log-format', 'text']);
    expect(args('json')).toEqual(['relay', '--config', '/etc/mail-continuity/config/relay.yaml']);
    expect(args()).toEqual(args('json'));
  });
});
