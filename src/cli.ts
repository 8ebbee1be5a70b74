#!/usr/bin/env node
// One image, several entrypoints: `operator`, `relay`, `queue`, `generate`. Each command
// parses its own flags (src/lib/cli-args.ts); a misuse answers with one line and the
// command's usage, exit code 2, never a stack trace.
import { reportFailure, UsageError } from './lib/cli-args.js';

const usage = `usage: mail-continuity <command> [flags]

commands:
  operator   run the controller (see --help of the command)
  relay      run the SMTP relay from a config file (relay --config FILE)
  queue      list or show spool entries (queue list [--dead] | queue show ID) --spool DIR
  dead       export or purge dead letters (dead export [ID...] [--out FILE] | dead purge ID...|--older-than D|--all) --spool DIR
  audit      check or export the audit log (audit verify --dir DIR | audit export --dir DIR [--since T] [--until T])
  generate   write crds/ from the API schemas (src/api/v1alpha1)
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'generate': {
      const { runGenerate } = await import('./generate.js');
      return runGenerate(rest);
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
    case 'dead': {
      const { runDead } = await import('./relay/spool/dead-cli.js');
      return runDead(rest);
    }
    case 'audit': {
      const { runAudit } = await import('./relay/audit/cli.js');
      return runAudit(rest);
    }
    case '-h':
    case '--help':
      process.stdout.write(usage);
      return 0;
    case undefined:
      throw new UsageError('no command given', usage);
    default:
      throw new UsageError(`unknown command "${command}"`, usage);
  }
}

const argv = process.argv.slice(2);
main(argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // An error of a command names it; one of this dispatch (no or an unknown command) does not.
    const own = err instanceof UsageError && err.usage === usage;
    const prefix = own || argv[0] === undefined ? 'mail-continuity' : `mail-continuity ${argv[0]}`;
    process.exitCode = reportFailure(prefix, err, (t) => process.stderr.write(t));
  },
);
