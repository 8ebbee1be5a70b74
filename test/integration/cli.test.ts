// The `mail-continuity` command line as a user meets it: the real CLI run as a child
// process. Every misuse of every command answers with one line naming what was wrong and the
// command's usage, exit code 2, never a stack trace; --help works everywhere; a spool path
// that is not a spool is an error, not "0 message(s)"; --log-format text|json of the relay and
// the operator, read from their stdout.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopProcess } from '../harness/process.js';
import { relayTestConfig } from '../harness/smtp-tools.js';
import { waitFor } from '../harness/wait.js';

const CLI = ['--import', 'tsx', 'src/cli.ts'];
// The default spool (/var/spool/mail-continuity) is not on a test machine; RELAY_SPOOL must not name one either.
const { RELAY_SPOOL: _spool, ...inherited } = process.env;
const env = { ...inherited, NODE_NO_WARNINGS: '1' };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...CLI, ...args], { env, timeout: 240_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

let dir: string;
let spool: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mc-cli-'));
  spool = join(dir, 'spool');
  await mkdir(join(spool, 'queue'), { recursive: true });
  await writeFile(join(dir, 'not-yaml.yaml'), 'a: [b\n');
  await writeFile(join(dir, 'bad.yaml'), 'instance: x\nspec: {}\n');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// [args, the one line's text after "mail-continuity[ command]: ", the usage it must be followed by]
const misuse: [string, () => string[], RegExp, string][] = [
  ['no command', () => [], /^mail-continuity: no command given$/, 'usage: mail-continuity <command>'],
  ['unknown command', () => ['frobnicate'], /^mail-continuity: unknown command "frobnicate"$/, 'usage: mail-continuity <command>'],
  ['operator: unknown flag', () => ['operator', '--bogus'], /^mail-continuity operator: unknown flag --bogus$/, 'usage: mail-continuity operator'],
  ['operator: flag without its value', () => ['operator', '--namespace'], /^mail-continuity operator: --namespace needs a value$/, 'usage: mail-continuity operator'],
  ['operator: stray argument', () => ['operator', 'now'], /^mail-continuity operator: unexpected argument "now"$/, 'usage: mail-continuity operator'],
  ['operator: --workers 0', () => ['operator', '--workers', '0'], /--workers: "0" is not a positive integer$/, 'usage: mail-continuity operator'],
  ['operator: bad duration', () => ['operator', '--lease-duration', 'soon'], /--lease-duration: "soon" is not a duration/, 'usage: mail-continuity operator'],
  ['operator: bad log format', () => ['operator', '--log-format', 'xml'], /--log-format: "xml" is not one of json, text$/, 'usage: mail-continuity operator'],
  ['operator: bad log level', () => ['operator', '--log-level', 'verbose'], /--log-level: "verbose" is not one of debug, info, warn, error$/, 'usage: mail-continuity operator'],
  ['operator: --leader-elect maybe', () => ['operator', '--leader-elect=maybe'], /--leader-elect: "maybe" is not one of true, false$/, 'usage: mail-continuity operator'],
  ['operator: bad label list', () => ['operator', '--operator-pod-labels', 'app'], /--operator-pod-labels: "app" is not a label/, 'usage: mail-continuity operator'],
  ['operator: kubeconfig missing', () => ['operator', '--kubeconfig', '/nonexistent/kubeconfig'], /--kubeconfig \/nonexistent\/kubeconfig: no such file/, 'usage: mail-continuity operator'],
  ['operator: bad bind address', () => ['operator', '--metrics-bind-address', 'eighty'], /--metrics-bind-address: "eighty" is not HOST:PORT/, 'usage: mail-continuity operator'],
  ['relay: no --config', () => ['relay'], /^mail-continuity relay: --config FILE is required$/, 'usage: mail-continuity relay'],
  ['relay: config file missing', () => ['relay', '--config', '/nonexistent.yaml'], /^mail-continuity relay: --config \/nonexistent.yaml: no such file$/, 'usage: mail-continuity relay'],
  ['relay: config is a directory', () => ['relay', '--config', dir], /: a directory, not a file$/, 'usage: mail-continuity relay'],
  ['relay: unknown flag', () => ['relay', '--conf', 'x'], /^mail-continuity relay: unknown flag --conf$/, 'usage: mail-continuity relay'],
  ['relay: bad log format', () => ['relay', '--config', '/x.yaml', '--log-format', 'pretty'], /--log-format: "pretty" is not one of json, text$/, 'usage: mail-continuity relay'],
  ['queue: spool missing', () => ['queue', 'list', '--spool', '/nonexistent'], /^mail-continuity queue: --spool \/nonexistent: no such directory/, 'usage: mail-continuity queue'],
  ['queue: not a spool', () => ['queue', 'list', '--spool', dir], /: not a relay spool \(it has no queue\/ directory\)$/, 'usage: mail-continuity queue'],
  ['queue: default spool missing', () => ['queue'], /--spool \/var\/spool\/mail-continuity: no such directory/, 'usage: mail-continuity queue'],
  ['queue: unknown subcommand', () => ['queue', 'purge', '--spool', spool], /unknown subcommand "purge" \(list or show\)$/, 'usage: mail-continuity queue'],
  ['queue: show without ID', () => ['queue', 'show', '--spool', spool], /show needs the ID of a message/, 'usage: mail-continuity queue'],
  ['queue: show with a bad ID', () => ['queue', 'show', '../etc', '--spool', spool], /"\.\.\/etc" is not a spool id/, 'usage: mail-continuity queue'],
  ['queue: unknown flag', () => ['queue', 'list', '--all'], /^mail-continuity queue: unknown flag --all$/, 'usage: mail-continuity queue'],
  ['queue: boolean with a value', () => ['queue', 'list', '--dead=yes'], /^mail-continuity queue: --dead takes no value$/, 'usage: mail-continuity queue'],
  ['audit: no subcommand', () => ['audit'], /^mail-continuity audit: name a subcommand: verify or export$/, 'usage: mail-continuity audit'],
  ['audit: unknown flag', () => ['audit', 'verify', '--directory', dir], /^mail-continuity audit: unknown flag --directory$/, 'usage: mail-continuity audit'],
  ['audit: no --dir', () => ['audit', 'verify'], /^mail-continuity audit: --dir is required/, 'usage: mail-continuity audit'],
  ['audit: --dir missing', () => ['audit', 'export', '--dir', '/nonexistent'], /^mail-continuity audit: --dir: \/nonexistent is not a directory$/, 'usage: mail-continuity audit'],
  ['audit: bad time', () => ['audit', 'export', '--dir', dir, '--since', 'yesterday'], /--since: "yesterday" is not an ISO 8601 time/, 'usage: mail-continuity audit'],
  ['generate: unknown flag', () => ['generate', '--bogus'], /^mail-continuity generate: unknown flag --bogus$/, 'usage: mail-continuity generate'],
  ['generate: stray argument', () => ['generate', 'crds'], /^mail-continuity generate: unexpected argument "crds"$/, 'usage: mail-continuity generate'],
];

/** Node prints stack frames as "    at f (file:line)": none may reach a user. */
const STACK_LINE = /^\s+at /m;

describe('mail-continuity misuse: one line, the usage, exit 2', () => {
  it.each(misuse)('%s', async (_name, args, line, usage) => {
    const r = await run(args());
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' });
    const [first, blank, ...rest] = r.stderr.split('\n');
    expect(first).toMatch(line);
    expect(blank).toBe('');
    expect(rest.join('\n')).toContain(usage);
    expect(r.stderr).not.toMatch(STACK_LINE);
  });
});

describe('mail-continuity --help', () => {
  it.each([
    [['--help'], 'usage: mail-continuity <command>'],
    [['operator', '--help'], 'usage: mail-continuity operator'],
    [['relay', '-h'], 'usage: mail-continuity relay'],
    [['queue', '--help'], 'usage: mail-continuity queue'],
    [['audit', '--help'], 'usage: mail-continuity audit'],
    [['audit', 'verify', '-h'], 'usage: mail-continuity audit'],
    [['generate', '--help'], 'usage: mail-continuity generate'],
  ])('%j: the usage on stdout, exit 0', async (args, usage) => {
    const r = await run(args);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout.startsWith(usage)).toBe(true);
  });
});

describe('mail-continuity errors that are not misuse', () => {
  it('queue list of an empty spool: 0 messages, exit 0', async () => {
    const r = await run(['queue', 'list', '--spool', spool]);
    expect(r).toEqual({ code: 0, stdout: `-- 0 message(s) in ${join(spool, 'queue')}\n`, stderr: '' });
  });

  it('queue show of an id not in the spool: one line, exit 1', async () => {
    const r = await run(['queue', 'show', 'abc123', '--spool', spool]);
    expect(r).toEqual({ code: 1, stdout: '', stderr: `queue show: no message abc123 in ${join(spool, 'queue')}\n` });
  });

  it('relay with a config that is not YAML, or breaks the schema: the file and the fields, exit 1, no stack', async () => {
    const notYaml = await run(['relay', '--config', join(dir, 'not-yaml.yaml')]);
    expect(notYaml.code).toBe(1);
    expect(notYaml.stderr).toMatch(/^mail-continuity relay: invalid relay config .*not-yaml\.yaml: not YAML or JSON: .+\n$/);
    const bad = await run(['relay', '--config', join(dir, 'bad.yaml')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^mail-continuity relay: invalid relay config .*bad\.yaml:\n {2}spec\.domains: /);
    expect(bad.stderr + notYaml.stderr).not.toMatch(STACK_LINE);
  });
});

/** Starts the CLI, collects its stdout lines until `done` holds, stops it (SIGTERM) and returns the lines and exit code. */
async function linesUntil(args: string[], done: (lines: string[]) => boolean): Promise<{ lines: string[]; code: number | null }> {
  const child = spawn(process.execPath, [...CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  const err: string[] = [];
  child.stdout.on('data', (d: Buffer) => out.push(d.toString()));
  child.stderr.on('data', (d: Buffer) => err.push(d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    await waitFor(
      `${args[0]} output`,
      () => {
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${err.join('')}`);
        return done(out.join('').split('\n'));
      },
      240_000,
    );
  } finally {
    await stopProcess(child, 20_000);
  }
  return { lines: out.join('').split('\n').filter((l) => l !== ''), code: await exited };
}

const ISO = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z';

describe('--log-format', () => {
  it('relay: text (ISO time, level name, message, key=value) and json (as before), each until a clean stop', async () => {
    const config = join(dir, 'relay.json');
    await writeFile(config, JSON.stringify(relayTestConfig({ primaryPort: 9, spool: join(dir, 'relay-spool') })));
    const ready = new RegExp(`^${ISO} INFO {2}relay ready instance=relay-test component=relay event=ready smtpPort=\\d+ httpPort=\\d+$`);
    const text = await linesUntil(['relay', '--config', config, '--log-format', 'text'], (ls) => ls.some((l) => ready.test(l)));
    expect(text.code).toBe(0);
    for (const l of text.lines) expect(l).toMatch(new RegExp(`^(${ISO} (INFO |WARN |ERROR|DEBUG) \\S|    )`));
    expect(text.lines.some((l) => new RegExp(`^${ISO} INFO {2}stopping .*signal=SIGTERM$`).test(l))).toBe(true);
    expect(text.lines.at(-1)).toMatch(new RegExp(`^${ISO} INFO {2}relay stopped instance=relay-test component=relay$`));

    const json = await linesUntil(['relay', '--config', config], (ls) => ls.some((l) => l.includes('"event":"ready"')));
    expect(json.code).toBe(0);
    for (const l of json.lines) expect(JSON.parse(l)).toMatchObject({ level: expect.any(Number), time: expect.any(Number) });
  });

  it('operator: text, the same format (an apiserver that is not there: the leader election warns)', async () => {
    const kubeconfig = join(dir, 'kubeconfig');
    await writeFile(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{name: c, cluster: {server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}}]',
        'users: [{name: u, user: {token: t}}]',
        'contexts: [{name: c, context: {cluster: c, user: u}}]',
        'current-context: c',
        '',
      ].join('\n'),
    );
    const warned = new RegExp(`^${ISO} WARN {2}leader election: lease update failed component=operator err=`);
    const r = await linesUntil(
      ['operator', '--kubeconfig', kubeconfig, '--metrics-bind-address=0', '--log-format', 'text', '--retry-period', '200ms'],
      (ls) => ls.some((l) => warned.test(l)),
    );
    expect(r.lines[0]).toMatch(new RegExp(`^${ISO} INFO {2}waiting for the leader Lease component=operator identity=\\S+$`));
    expect(r.lines.some((l) => l.startsWith('{'))).toBe(false);
  });
});
