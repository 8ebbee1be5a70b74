// The command line of every `mail-continuity` command: parsed (node:util parseArgs) or
// explained. A misuse — an unknown flag, a flag without its value, a value of the wrong
// form, a named file that does not exist — is a UsageError: the command answers with one
// line naming the flag and the fix, then its usage, and exits 2. Other errors a person can
// act on are CliErrors (one line, their own exit code); only a bug prints a stack trace.
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** An error a person can act on: printed as one line without a stack, exit code `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The command was used wrongly: one line, then the command's usage, exit code 2. */
export class UsageError extends CliError {
  constructor(
    message: string,
    public usage?: string,
  ) {
    super(message, 2);
    this.name = 'UsageError';
  }
}

/** node:util's parseArgs errors, reworded: Node's name the option but suggest a '--' trick that never applies here. */
function explainParseError(err: Error & { code?: string }): string | undefined {
  const msg = err.message;
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const flag = /Unknown option '([^']+)'/.exec(msg)?.[1];
      return flag ? `unknown flag ${flag}` : msg;
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const missing = /Option '(?:-\w, )?(--[\w-]+) <value>' argument missing/.exec(msg)?.[1];
      if (missing) return `${missing} needs a value`;
      const boolean = /Option '(?:-\w, )?(--[\w-]+)' does not take an argument/.exec(msg)?.[1];
      return boolean ? `${boolean} takes no value` : msg;
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL': {
      const arg = /Unexpected argument '([^']*)'/.exec(msg)?.[1];
      return arg !== undefined ? `unexpected argument "${arg}"` : msg;
    }
    default:
      return undefined;
  }
}

/** parseArgs (strict), or a UsageError carrying `usage` with the reason in one line. */
export function parseCommandArgs<T extends ParseArgsConfig>(usage: string, config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config); // strict by default: unknown flags and stray arguments are errors
  } catch (err) {
    const reason = err instanceof Error ? explainParseError(err) : undefined;
    if (reason !== undefined) throw new UsageError(reason, usage);
    throw err;
  }
}

/** `value` if it is one of `choices`, else a UsageError naming the flag and the choices. */
export function oneOf<C extends string>(flag: string, value: string, choices: readonly C[]): C {
  if ((choices as readonly string[]).includes(value)) return value as C;
  throw new UsageError(`--${flag}: "${value}" is not one of ${choices.join(', ')}`);
}

/**
 * The UsageError for `--flag FILE` when reading FILE failed because it is not there or is a
 * directory (the flag was misused); undefined for any other failure. `hint` is added to the line.
 */
export function missingFile(flag: string, file: string, err: unknown, hint = ''): UsageError | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new UsageError(`--${flag} ${file}: no such file${hint}`);
  if (code === 'EISDIR') return new UsageError(`--${flag} ${file}: a directory, not a file${hint}`);
  return undefined;
}

/** Runs a command; a UsageError thrown without a usage (a flag checked after parsing) gets this one. */
export async function withUsage<T>(usage: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof UsageError && err.usage === undefined) err.usage = usage;
    throw err;
  }
}

/**
 * What a failed command prints on stderr (through `write`) and its exit code: the
 * UsageError's line and usage (2), a CliError's line (its code), a bug's stack (1).
 */
export function reportFailure(prefix: string, err: unknown, write: (text: string) => void): number {
  if (err instanceof UsageError) {
    write(`${prefix}: ${err.message}\n${err.usage ? `\n${err.usage}` : ''}`);
    return err.exitCode;
  }
  if (err instanceof CliError) {
    write(`${prefix}: ${err.message}\n`);
    return err.exitCode;
  }
  write(`${prefix}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
}
