// The operator's and the relay's logger, in one of two formats (--log-format):
//   json  pino's JSON lines, as log collectors read them: numeric levels, epoch-millisecond time
//   text  for people: ISO time, level name, message, then key=value fields
//         2026-12-03T16:21:25.939Z INFO  relay ready component=relay event=ready smtpPort=2525
// Text is pino's own line reformatted synchronously on the way out (no worker thread, no
// pino-pretty): what is logged before a crash is on stdout, in either format.
import { destination, pino, type DestinationStream, type Logger } from 'pino';

export const LOG_FORMATS = ['json', 'text'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** A bare word, or a JSON string when it has spaces, quotes, '=' or control characters (or is empty). */
function textValue(v: unknown): string {
  if (typeof v === 'string') return v !== '' && !/[\s"=\\]/.test(v) && JSON.stringify(v) === `"${v}"` ? v : JSON.stringify(v);
  if (v === null || typeof v !== 'object') return String(v);
  return JSON.stringify(v);
}

/** Continuation lines of a multi-line text, indented under the line they belong to. */
const indent = (text: string) => text.replace(/\n/g, '\n    ');

/** One pino JSON line as a text line; anything that is not a JSON object passes unchanged. */
export function formatTextLine(line: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (o === null || typeof o !== 'object' || Array.isArray(o)) return line;
  const { time, level, msg, err, ...fields } = o;
  const head: string[] = [];
  if (time !== undefined) head.push(typeof time === 'number' ? new Date(time).toISOString() : String(time));
  if (level !== undefined) head.push((LEVEL_NAMES[level as number] ?? String(level)).padEnd(5));
  if (msg !== undefined) head.push(indent(String(msg)));
  const pairs = Object.entries(fields).map(([k, v]) => `${k}=${textValue(v)}`);
  let stack = '';
  if (err !== undefined) {
    const e = err as { message?: unknown; stack?: unknown };
    const isObject = typeof err === 'object' && err !== null;
    pairs.push(`err=${textValue(isObject && e.message !== undefined ? e.message : err)}`);
    if (isObject && typeof e.stack === 'string') stack = `\n    ${indent(e.stack)}`;
  }
  return `${[...head, ...pairs].join(' ')}${stack}\n`;
}

export interface LoggerOptions {
  format: LogFormat;
  /** debug, info, warn, error (default info). */
  level?: string;
  /** Fields on every line, e.g. { component: 'relay' }. */
  base: Record<string, unknown>;
}

/** A pino logger writing `format` to `out` (default: stdout, synchronously). */
export function createLogger(opts: LoggerOptions, out?: DestinationStream): Logger {
  const options = { level: opts.level ?? 'info', base: opts.base };
  if (opts.format === 'json') return out ? pino(options, out) : pino(options);
  const sink = out ?? destination({ dest: 1, sync: true });
  return pino(
    { ...options, timestamp: pino.stdTimeFunctions.isoTime },
    { write: (line: string) => void sink.write(formatTextLine(line)) },
  );
}
