// `relay --config FILE`: the relay process. SIGTERM/SIGINT: stop accepting,
// finish messages being written (they get their 250), stop deliveries (their
// state stays in the spool), exit.
import { readFile } from 'node:fs/promises';
import { RelayConfig } from '../api/relay/config.js';
import { CliError, missingFile, oneOf, parseCommandArgs, reportFailure, UsageError, withUsage } from '../lib/cli-args.js';
import { createLogger, LOG_FORMATS } from '../lib/log.js';
import { startRelay } from './relay.js';

export const relayUsage = `usage: mail-continuity relay --config FILE [--log-format json|text]

  --config FILE   the relay config (YAML or JSON): the MailContinuity spec plus paths, ports and
                  tuning; the operator renders it into the relay ConfigMap
  --log-format F  json (default: one JSON object a line) or text (ISO time, level name, message,
                  key=value); in Kubernetes the operator passes its own --log-format
  POD_NAME        (environment) names this replica in logs, metrics and the audit log
`;

/**
 * Reads and validates a config file (YAML or JSON). A file that is not there is a UsageError
 * (exit 2); one that cannot be read or parsed, or breaks the schema, a CliError naming the
 * file and each wrong field (exit 1).
 */
export async function loadRelayConfig(file: string): Promise<RelayConfig> {
  const { parse } = await import('yaml');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw missingFile('config', file, err) ?? new CliError(`--config ${file}: cannot read it (${(err as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    throw new CliError(`invalid relay config ${file}: not YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  const result = RelayConfig.safeParse(raw);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new CliError(`invalid relay config ${file}:\n${lines.join('\n')}`);
  }
  return result.data;
}

/** `relay` with its flags; a misuse is a UsageError (one line and this usage, exit 2). */
export function runRelay(args: string[]): Promise<number> {
  return withUsage(relayUsage, () => relay(args));
}

async function relay(args: string[]): Promise<number> {
  const { values } = parseCommandArgs(relayUsage, {
    args,
    options: {
      config: { type: 'string', short: 'c' },
      'log-format': { type: 'string', default: 'json' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(relayUsage);
    return 0;
  }
  if (!values.config) throw new UsageError('--config FILE is required');
  const format = oneOf('log-format', values['log-format']!, LOG_FORMATS);
  const config = await loadRelayConfig(values.config);
  // In Kubernetes all replicas share one config file: the pod name tells them apart
  // in logs, metrics and the audit log (the StatefulSet sets POD_NAME).
  if (process.env.POD_NAME) config.instance = process.env.POD_NAME;
  const log = createLogger({ format, base: { instance: config.instance, component: 'relay' } });
  const relay = await startRelay(config, { log, defaultMetrics: true });
  // One line a supervisor (or a test) can wait for.
  log.info({ event: 'ready', smtpPort: relay.smtpPort, httpPort: relay.httpPort }, 'relay ready');
  return await new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      log.info({ signal }, 'stopping');
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      relay.stop().then(
        () => resolve(0),
        (e: unknown) => {
          log.error({ err: (e as Error).message }, 'stop failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

// Run directly: `tsx src/relay/main.ts --config FILE`.
if (process.argv[1] && /[\\/]relay[\\/]main\.(ts|js)$/.test(process.argv[1])) {
  runRelay(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => process.exit(reportFailure('mail-continuity relay', e, (t) => process.stderr.write(t))),
  );
}
