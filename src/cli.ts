#!/usr/bin/env node
// One image, several entrypoints: `operator`, `relay`, `generate`.
import { parseArgs } from 'node:util';

const usage = `usage: mail-continuity <command> [flags]

commands:
  operator   run the controller (see --help of the command)
  relay      run the SMTP relay from a config file (relay --config FILE)
  queue      list or show spool entries (queue list [--dead] | queue show ID) --spool DIR
  audit      check or export the audit log (audit verify --dir DIR | audit export --dir DIR [--since T] [--until T])
  generate   write crds/ from the API schemas (src/api/v1alpha1)
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'generate': {
      const { values } = parseArgs({ args: rest, options: { out: { type: 'string', default: 'crds' } } });
      const { writeCrds } = await import('./generate.js');
      for (const file of await writeCrds(values.out)) console.log(`wrote ${file}`);
      return 0;
    }
    case 'operator': {
      const { runOperator } = await import('./operator/main.js');
      return runOperator(rest);
    }
    case 'relay': {
      const { runRelay } = await import('./relay/main.js');
      return runRelay(rest);
    }
    case 'queue': {
      const { runQueue } = await import('./relay/spool/queue-cli.js');
      return runQueue(rest);
    }
    case 'audit': {
      const { runAudit } = await import('./relay/audit/cli.js');
      return runAudit(rest);
    }
    case undefined:
    case '-h':
    case '--help':
      process.stdout.write(usage);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`mail-continuity: unknown command "${command}"\n${usage}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exitCode = 1;
  },
);
