// `relay --config FILE`: the relay process. SIGTERM/SIGINT: stop accepting,
// finish messages being written (they get their 250), stop deliveries (their
// state stays in the spool), exit.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { RelayConfig } from '../api/relay/config.js';
import { startRelay } from './relay.js';

export const relayUsage = `usage: mail-continuity relay --config FILE

  --config FILE   the relay config (YAML or JSON): the MailContinuity spec plus paths, ports and
                  tuning; the operator renders it into the relay ConfigMap
  POD_NAME        (environment) names this replica in logs, metrics and the audit log
`;

/** Reads and validates a config file (YAML or JSON); errors name the field. */
export async function loadRelayConfig(file: string): Promise<RelayConfig> {
  const { parse } = await import('yaml');
  const raw: unknown = parse(await readFile(file, 'utf8'));
  const result = RelayConfig.safeParse(raw);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new Error(`invalid relay config ${file}:\n${lines.join('\n')}`);
  }
  return result.data;
}

export async function runRelay(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(relayUsage);
    return 0;
  }
  if (!values.config) {
    process.stderr.write(relayUsage);
    return 2;
  }
  const config = await loadRelayConfig(values.config);
  // In Kubernetes all replicas share one config file: the pod name tells them apart
  // in logs, metrics and the audit log (the StatefulSet sets POD_NAME).
  if (process.env.POD_NAME) config.instance = process.env.POD_NAME;
  const log = pino({ base: { instance: config.instance, component: 'relay' } });
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
    (e: unknown) => {
      console.error(e instanceof Error ? e.message : e);
      process.exit(1);
    },
  );
}
