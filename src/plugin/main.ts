#!/usr/bin/env node
// kubectl-mailcontinuity (kubectl mailcontinuity ...): the operator's console,
// with the user's kubeconfig and RBAC only (relays.ts). So far:
//   status [NAME]       conditions, last failover, maintenance window, and per
//                       relay pod: messages waiting for Exchange and for Gmail,
//                       held, deferred, the oldest's age;
//   queue list NAME     every relay's queue, with filters.
// Tables by default, -o json|yaml for scripts; errors name what to fix, a
// missing permission exits 4 and names it.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { KubeClient } from '../operator/kube/client.js';
import { CliError, parseCommandArgs, reportFailure, UsageError } from '../lib/cli-args.js';
import { explain, getMc, listMcs, relayCall, relayPods, relayToken, type MC } from './relays.js';
import { renderQueue, renderStatus, statusData, type Output, type PodQueue, type QueueItem } from './render.js';

export const usage = `usage: kubectl mailcontinuity <command> [flags]

  status [NAME]          a MailContinuity (every one in the namespace without NAME) and its relays
  queue list NAME        the messages waiting in its relays
        --destination primary|backup   --recipient ADDR   --sender ADDR
        --state held|deferred|active   --min-age SECONDS
  queue hold|release|retry|delete NAME ID [--reason TEXT]
                         one message (ID from queue list), on whichever relay holds it; hold keeps it
                         from leaving, also for Gmail; every change is in the relay's audit log with
                         your user name as the apiserver knows it
  queue flush NAME       every waiting retry now, on every relay

flags:
  -n, --namespace NS     default: the kubeconfig context's namespace, else default
  -o, --output FORMAT    table (default), json or yaml
  --kubeconfig FILE      default: $KUBECONFIG, else ~/.kube/config
`;

const options = {
  namespace: { type: 'string', short: 'n' },
  output: { type: 'string', short: 'o', default: 'table' },
  kubeconfig: { type: 'string' },
  destination: { type: 'string' },
  recipient: { type: 'string' },
  sender: { type: 'string' },
  state: { type: 'string' },
  'min-age': { type: 'string' },
  reason: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function run(args: string[], write: (text: string) => void): Promise<number> {
  const { values, positionals } = parseCommandArgs(usage, { args, allowPositionals: true, options });
  if (values.help) {
    write(usage);
    return 0;
  }
  const output = values.output as Output;
  if (!['table', 'json', 'yaml'].includes(output)) throw new UsageError(`--output ${values.output}: use table, json or yaml`, usage);
  const client = KubeClient.fromFile(values.kubeconfig);
  const ns = values.namespace ?? client.kubeConfig.getContextObject(client.kubeConfig.getCurrentContext())?.namespace ?? 'default';
  const [command, ...rest] = positionals;
  if (command === 'status') {
    if (rest.length > 1) throw new UsageError(`unexpected argument "${rest[1]}"`, usage);
    const mcs = rest[0] ? [await getMc(client, ns, rest[0])] : await listMcs(client, ns);
    if (mcs.length === 0) throw new CliError(`no MailContinuity in namespace ${ns}`, 3);
    const all = [];
    // The resource's own status needs no access to the relays: a missing permission there shows per relay.
    for (const mc of mcs) all.push(statusData(mc, await queues(client, ns, mc, '', false)));
    if (output === 'table') write(all.map((d) => renderStatus(d, 'table')).join('\n'));
    else write(renderStatus((rest[0] ? all[0] : { items: all }) as ReturnType<typeof statusData>, output));
    return 0;
  }
  if (command === 'queue') {
    const [sub, name, ...extra] = rest;
    if (sub && CHANGES.has(sub)) return change(client, ns, sub, name, extra, values.reason, output, write);
    if (sub !== 'list') throw new UsageError(sub ? `unknown queue command "${sub}": use list, hold, release, retry, delete or flush` : 'queue needs a command: list, hold, release, retry, delete or flush', usage);
    if (!name) throw new UsageError('queue list needs the MailContinuity NAME', usage);
    if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`, usage);
    const q = new URLSearchParams();
    for (const [flag, param] of [['destination', 'destination'], ['recipient', 'recipient'], ['sender', 'sender'], ['state', 'state'], ['min-age', 'minAgeSeconds']] as const) {
      const v = values[flag];
      if (v !== undefined) q.set(param, v);
    }
    write(renderQueue(await queues(client, ns, await getMc(client, ns, name), q.size > 0 ? `?${q}` : '', true), output));
    return 0;
  }
  throw new UsageError(command ? `unknown command "${command}"` : 'no command given', usage);
}

const CHANGES = new Set(['hold', 'release', 'retry', 'delete', 'flush']);

/** hold|release|retry|delete NAME ID on the relay that has ID, or flush NAME on all of them. */
async function change(client: KubeClient, ns: string, sub: string, name: string | undefined, extra: string[], reason: string | undefined, output: Output, write: (t: string) => void): Promise<number> {
  if (!name) throw new UsageError(`queue ${sub} needs the MailContinuity NAME`, usage);
  const id = extra[0];
  if (sub !== 'flush' && !id) throw new UsageError(`queue ${sub} needs the message ID (from queue list)`, usage);
  if (extra.length > (sub === 'flush' ? 0 : 1)) throw new UsageError(`unexpected argument "${extra[sub === 'flush' ? 0 : 1]}"`, usage);
  await getMc(client, ns, name);
  const pods = (await relayPods(client, ns, name)).filter((p) => p.ready);
  if (pods.length === 0) throw new CliError(`no running relay pod of ${ns}/${name}`, 3);
  const token = await relayToken(client, ns, name);
  const actor = await whoAmI(client);
  const body = reason ? { reason } : {};
  const print = (r: unknown) => write(output === 'table' ? `${typeof r === 'object' && r && 'id' in r ? `${sub}: ${String((r as { id: unknown }).id)} ${String((r as { state?: unknown }).state ?? '')}` : JSON.stringify(r)}\n` : `${JSON.stringify(r, null, 2)}\n`);
  if (sub === 'flush') {
    for (const pod of pods) print({ pod: pod.name, ...(await relayCall<object>(client, ns, pod, token, 'POST', '/admin/queue/flush', body, actor)) });
    return 0;
  }
  const [method, path] = sub === 'delete' ? ['DELETE', `/admin/queue/${encodeURIComponent(id!)}`] : ['POST', `/admin/queue/${encodeURIComponent(id!)}/${sub}`];
  for (const pod of pods) {
    try {
      print({ pod: pod.name, ...(await relayCall<object>(client, ns, pod, token, method!, path!, body, actor)) });
      return 0;
    } catch (err) {
      if (!(err instanceof CliError && err.exitCode === 3)) throw err; // not on this relay: the next one
    }
  }
  throw new CliError(`no relay of ${ns}/${name} has message ${id} (delivered, deleted, or a wrong ID: see queue list)`, 3);
}

/** The user as the apiserver authenticated them (SelfSubjectReview), for the relays' audit records. */
async function whoAmI(client: KubeClient): Promise<string> {
  try {
    const r = await client.request<{ status?: { userInfo?: { username?: string } } }>('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'SelfSubjectReview',
    });
    return r.status?.userInfo?.username ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Every relay pod's queue; a relay that cannot be asked is reported, a missing permission fails the command. */
async function queues(client: KubeClient, ns: string, mc: MC, query: string, forbiddenFails: boolean): Promise<PodQueue[]> {
  const name = mc.metadata.name;
  const pods = await relayPods(client, ns, name);
  if (pods.length === 0) return [];
  let token: string;
  try {
    token = await relayToken(client, ns, name);
  } catch (err) {
    if (forbiddenFails || !(err instanceof CliError)) throw err;
    return pods.map((p) => ({ pod: p.name, error: err.message }));
  }
  return Promise.all(
    pods.map(async (pod): Promise<PodQueue> => {
      if (!pod.ready) return { pod: pod.name, error: 'not running' };
      try {
        const r = await relayCall<{ items?: QueueItem[]; error?: string }>(client, ns, pod, token, 'GET', `/admin/queue${query}`);
        return { pod: pod.name, items: r.items ?? [] };
      } catch (err) {
        if (forbiddenFails && err instanceof CliError && err.exitCode === 4) throw err;
        return { pod: pod.name, error: explain(err, pod.name).message.slice(0, 300) };
      }
    }),
  );
}

/** Run as a program (also through a symlink such as npm's bin or kubectl's plugin PATH), not imported. */
const isMain = () => {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
};

if (isMain()) {
  // Exits once the output is written: the client's keep-alive connections would hold the process.
  const exit = (code: number) => process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
  run(process.argv.slice(2), (t) => process.stdout.write(t)).then(exit, (err: unknown) =>
    exit(reportFailure('kubectl mailcontinuity', err, (t) => process.stderr.write(t))),
  );
}
