// The whole product on one machine, for the failover scenario test and `make
// demo`: etcd + kube-apiserver, the CRD, the operator as a process, Postfix as
// Exchange, the Gmail emulator, and the relay replicas as local processes
// started from the config the operator rendered into the ConfigMap.
//
// There is no kubelet here, so no relay Pod runs: the relays are processes
// whose config is the ConfigMap's, with local paths, ports and the emulator's
// URLs put in, and the operator learns their admin URLs from --local-relay
// instead of from Pod IPs. Everything else is the real thing.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { freePort, startControlPlane, type ControlPlane } from './controlplane.js';
import { startGmailEmulator, type GmailEmulator } from './gmail-emulator.js';
import { startPostfix, type PostfixInstance } from './postfix.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';
import { stopProcess } from './process.js';
import { waitFor } from './wait.js';

/** Relay timers for scenario runs: retries within seconds instead of production's 30 s to 10 min. */
export const FAST_RELAY_TUNING = { minBackoffMs: 1000, maxBackoffMs: 5000, sweepIntervalMs: 200 };

/**
 * A FailoverOnly spec for the stack: mail from loopback, probes with a 1 s timeout, Gmail through
 * the emulator's service account (the Secret startStack creates) unless `backup` says otherwise.
 * startStack fills in the primary's address.
 */
export function loopbackSpec(o: {
  domain: string;
  periodSeconds: number;
  failureThreshold: number;
  successThreshold: number;
  messageDeadline: string;
  maxMessagesPerSecond: number;
  backup?: Record<string, unknown>;
  policy?: Record<string, unknown>;
}): Record<string, unknown> {
  return {
    domains: [o.domain],
    mode: 'FailoverOnly',
    primary: {
      health: {
        periodSeconds: o.periodSeconds,
        timeoutSeconds: 1,
        failureThreshold: o.failureThreshold,
        successThreshold: o.successThreshold,
      },
    },
    backup: o.backup ?? { gmail: { method: 'GmailApi', serviceAccountSecretRef: { name: 'gmail-service-account' } } },
    ...(o.policy ? { policy: o.policy } : {}),
    relay: { acceptFrom: ['127.0.0.0/8'] },
    failover: { messageDeadline: o.messageDeadline },
    recovery: { maxMessagesPerSecond: o.maxMessagesPerSecond },
  };
}

export interface StackOptions {
  name: string;
  namespace?: string;
  /** The MailContinuity spec; primary host/port are set to the local Postfix. */
  spec: Record<string, unknown>;
  /** Relay replicas (processes); overrides spec.relay.replicas. */
  relays?: number;
  /** Workspace mailboxes of the Gmail emulator. */
  gmailUsers: string[];
  /** Mail domains Postfix delivers into Maildirs. */
  domains: string[];
  /** Relay `tuning` overrides (e.g. shorter backoff in tests). */
  tuning?: Record<string, unknown>;
  /** Progress lines (default: none). */
  progress?: (line: string) => void;
  /** Called at once with the function that stops everything started so far (Ctrl-C during start). */
  registerStop?: (stop: () => Promise<void>) => void;
  /**
   * Put a TCP proxy in front of Postfix and make it the spec's primary
   * (stack.proxy): outages that start and end instantly (default: false, the
   * primary is Postfix itself).
   */
  primaryProxy?: boolean;
  /** Where relay i writes its audit log (default: its own directory), e.g. a small file system to fill. */
  auditFile?: (i: number) => string;
}

export interface RelayProcess {
  index: number;
  instance: string;
  smtpPort: number;
  adminUrl: string;
  configFile: string;
  auditFile: string;
  proc: ChildProcess;
  /** JSON log lines so far. */
  lines: Record<string, unknown>[];
}

export interface Stack {
  cp: ControlPlane;
  kubectl(args: string[], input?: string): string;
  /** The first relay's SMTP listener. */
  smtp: { host: string; port: number };
  /** The first relay's audit log lines. */
  auditLog(): Promise<string[]>;
  /** What the demo says about this stack after `kubectl get mc`. */
  note: string;
  postfix: PostfixInstance;
  /** The proxy the primary points at, with options.primaryProxy. */
  proxy: TcpProxy | undefined;
  gmail: GmailEmulator;
  relays: RelayProcess[];
  dir: string;
  namespace: string;
  name: string;
  adminToken: string;
  /** The MailContinuity as the apiserver has it. */
  get(): MailContinuityObject;
  condition(type: string): { status: string; reason: string; message: string; lastTransitionTime: string } | undefined;
  events(): { reason: string; type: string; message: string; count?: number }[];
  /** The relay's own view: GET /admin/failover. */
  relayState(i: number): Promise<{
    active: boolean;
    messagesToBackup: number;
    messagesReplayed: number;
    replaying: boolean;
    queuedPrimary: number;
    queuedBackup: number;
  }>;
  /** Message-IDs the relays answered 250 for (from their `queued` log lines). */
  accepted(): string[];
  stopOperator(): Promise<void>;
  startOperator(): Promise<void>;
  /**
   * Waits until the operator renders a relay config other than the one the relays run that
   * `until` accepts, then restarts every relay from it, one after the other (a rolling update).
   */
  rollRelays(until: (relayYaml: string) => boolean): Promise<void>;
  operatorLog(): string;
  stop(): Promise<void>;
}

export interface MailContinuityObject {
  metadata: { name: string; generation: number };
  status?: {
    observedGeneration?: number;
    conditions?: { type: string; status: string; reason: string; message: string; lastTransitionTime: string }[];
    primary?: Record<string, unknown>;
    lastFailover?: {
      start?: string;
      end?: string;
      trigger?: string;
      messagesToBackup?: number;
      messagesReplayed?: number;
      replayRemaining?: number;
    };
  };
}

const TSX = ['--import', 'tsx', 'src/cli.ts'];

function jsonLines(proc: ChildProcess, into: Record<string, unknown>[], raw: string[]): void {
  let rest = '';
  proc.stdout!.on('data', (d: Buffer) => {
    raw.push(d.toString());
    const parts = (rest + d.toString()).split('\n');
    rest = parts.pop()!;
    for (const p of parts) {
      try {
        into.push(JSON.parse(p) as Record<string, unknown>);
      } catch {
        /* not JSON */
      }
    }
  });
}

export async function startStack(o: StackOptions): Promise<Stack> {
  const say = o.progress ?? (() => {});
  const namespace = o.namespace ?? 'default';
  const replicas = o.relays ?? 1;
  const dir = await mkdtemp(join(tmpdir(), 'mc-stack-'));
  let cp: ControlPlane | undefined;
  let postfix: PostfixInstance | undefined;
  let proxy: TcpProxy | undefined;
  let gmail: GmailEmulator | undefined;
  let operator: ChildProcess | undefined;
  const relays: RelayProcess[] = [];
  const opLog: string[] = [];

  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= stopAll());
  const stopAll = async () => {
    await Promise.all(relays.map((r) => stopProcess(r.proc, 10_000)));
    await stopProcess(operator, 10_000);
    await gmail?.close();
    await proxy?.stop();
    await postfix?.destroy();
    await cp?.stop();
    await rm(dir, { recursive: true, force: true });
  };
  o.registerStop?.(stop);

  try {
    say('starting etcd and kube-apiserver on loopback (built from Go modules, cached)');
    cp = await startControlPlane();
    say('kubectl apply --server-side -f crds/');
    cp.kubectl(['apply', '--server-side', '-f', 'crds/']);
    if (namespace !== 'default') cp.kubectl(['create', 'namespace', namespace]);

    say('starting Postfix as Exchange and the Gmail emulator (loopback)');
    postfix = await startPostfix({ domains: o.domains });
    gmail = await startGmailEmulator({ users: o.gmailUsers });
    if (o.primaryProxy) proxy = await startTcpProxy({ port: await freePort(), targetPort: postfix.port });
    const primaryPort = proxy?.port ?? postfix.port;
    cp.kubectl([
      '-n',
      namespace,
      'create',
      'secret',
      'generic',
      'gmail-service-account',
      `--from-literal=credentials.json=${gmail.serviceAccount.keyJson}`,
    ]);

    const httpPorts: number[] = [];
    for (let i = 0; i < replicas; i++) httpPorts.push(await freePort());
    const adminUrls = httpPorts.map((p) => `http://127.0.0.1:${p}`);
    const metricsPort = await freePort();
    const startOperator = async () => {
      operator = spawn(
        process.execPath,
        [
          ...TSX,
          'operator',
          `--kubeconfig=${cp!.kubeconfig}`,
          '--leader-elect=false',
          `--metrics-bind-address=127.0.0.1:${metricsPort}`,
          `--local-relay=${namespace}/${o.name}=${adminUrls.join(',')}`,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      operator.stdout!.on('data', (d: Buffer) => opLog.push(d.toString()));
      operator.stderr!.on('data', (d: Buffer) => opLog.push(d.toString()));
      const from = opLog.length;
      await waitFor('the operator to start', () => opLog.slice(from).join('').includes('caches synced'), 60_000);
    };
    say('starting the operator');
    await startOperator();

    say(
      `kubectl apply: MailContinuity ${namespace}/${o.name} (${String(o.spec.mode ?? 'FailoverOnly')}, primary = ${proxy ? `a proxy on 127.0.0.1:${proxy.port} in front of ` : ''}Postfix on 127.0.0.1:${postfix.port})`,
    );
    const spec = structuredClone(o.spec) as Record<string, Record<string, unknown>>;
    spec.primary = { ...spec.primary, host: '127.0.0.1', port: primaryPort, tls: 'None' };
    spec.relay = { ...spec.relay, replicas };
    const manifest = {
      apiVersion: 'mailcontinuity.io/v1alpha1',
      kind: 'MailContinuity',
      metadata: { name: o.name, namespace },
      spec,
    };
    cp.kubectl(['apply', '--server-side', '-f', '-'], YAML.stringify(manifest));

    say('waiting for the operator to render the relay config (ConfigMap) and its admin token (Secret)');
    /** A field of an object the operator writes, once it exists. */
    const field = (what: string, kind: string, name: string, path: string, accept: (v: string) => boolean = () => true) =>
      waitFor(what, () => {
        try {
          const v = cp!.kubectl(['-n', namespace, 'get', kind, name, '-o', `jsonpath={${path}}`]);
          return v && accept(v) ? v : undefined;
        } catch {
          return undefined;
        }
      });
    const relayYaml = await field('the relay ConfigMap', 'configmap', `${o.name}-relay-config`, '.data.relay\\.yaml');
    const adminToken = Buffer.from(
      await field('the admin Secret', 'secret', `${o.name}-relay-admin`, '.data.token'),
      'base64',
    ).toString('utf8');
    await writeFile(join(dir, 'admin-token'), adminToken, { mode: 0o600 });
    await writeFile(join(dir, 'gmail.json'), gmail.serviceAccount.keyJson, { mode: 0o600 });

    /** Starts relay `i` from the rendered config (a Pod of the StatefulSet); the same spool and ports each time. */
    const smtpPorts: number[] = [];
    for (let i = 0; i < replicas; i++) smtpPorts.push(await freePort());
    const spawnRelay = async (i: number, yaml: string): Promise<RelayProcess> => {
      const rendered = YAML.parse(yaml) as Record<string, Record<string, unknown>>;
      const rdir = join(dir, `relay-${i}`);
      await mkdir(rdir, { recursive: true });
      const smtpPort = smtpPorts[i]!;
      // What a Pod would get from its volumes, here as local paths and ports.
      const config = {
        ...rendered,
        listen: { ...rendered.listen, host: '127.0.0.1', port: smtpPort },
        http: { host: '127.0.0.1', port: httpPorts[i] },
        paths: {
          spool: join(rdir, 'spool'),
          audit: o.auditFile?.(i) ?? join(rdir, 'audit.log'),
          adminToken: join(dir, 'admin-token'),
          gmailServiceAccount: join(dir, 'gmail.json'),
        },
        google: { rootUrl: gmail!.rootUrl, tokenUrl: gmail!.tokenUrl },
        tuning: { spoolMinFreeBytes: 0, ...o.tuning },
      };
      const configFile = join(rdir, 'relay.yaml');
      await writeFile(configFile, YAML.stringify(config));
      const instance = `${o.name}-relay-${i}`;
      say(`starting relay ${instance} (SMTP 127.0.0.1:${smtpPort}) from the rendered config`);
      const proc = spawn(process.execPath, [...TSX, 'relay', '--config', configFile], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, POD_NAME: instance },
      });
      const r: RelayProcess = {
        index: i,
        instance,
        smtpPort,
        adminUrl: adminUrls[i]!,
        configFile,
        auditFile: o.auditFile?.(i) ?? join(rdir, 'audit.log'),
        proc,
        lines: [],
      };
      const raw: string[] = [];
      jsonLines(proc, r.lines, raw);
      proc.stderr!.on('data', (d: Buffer) => raw.push(d.toString()));
      await waitFor(
        `relay ${i} ready`,
        () => {
          if (proc.exitCode !== null) throw new Error(`relay ${i} exited: ${raw.join('').slice(-2000)}`);
          return r.lines.some((l) => l.event === 'ready');
        },
        60_000,
      );
      return r;
    };
    for (let i = 0; i < replicas; i++) relays.push(await spawnRelay(i, relayYaml));
    let runningYaml = relayYaml;

    const kube = cp;
    const get = () =>
      JSON.parse(
        kube.kubectl(['-n', namespace, 'get', 'mailcontinuity', o.name, '-o', 'json']),
      ) as MailContinuityObject;
    return {
      cp,
      kubectl: kube.kubectl,
      smtp: { host: '127.0.0.1', port: relays[0]!.smtpPort },
      auditLog: async () =>
        (await readFile(relays[0]!.auditFile, 'utf8').catch(() => '')).split('\n').filter((l) => l !== '' && !l.includes('"action":"genesis"')),
      note: '  (READY stays False: no kubelet runs the relay Pods in this stack, so the StatefulSet never reports ready replicas)',
      postfix,
      proxy,
      gmail,
      relays,
      dir,
      namespace,
      name: o.name,
      adminToken,
      get,
      condition: (type) => get().status?.conditions?.find((c) => c.type === type),
      events: () =>
        (
          JSON.parse(
            kube.kubectl([
              '-n',
              namespace,
              'get',
              'events',
              '--field-selector',
              `involvedObject.name=${o.name}`,
              '-o',
              'json',
            ]),
          ) as {
            items: { reason: string; type: string; message: string; count?: number }[];
          }
        ).items,
      relayState: async (i) => {
        const res = await fetch(`${adminUrls[i]}/admin/failover`, {
          headers: { authorization: `Bearer ${adminToken}` },
          signal: AbortSignal.timeout(3000),
        });
        if (!res.ok) throw new Error(`relay ${i}: HTTP ${res.status}`);
        return (await res.json()) as Awaited<ReturnType<Stack['relayState']>>;
      },
      accepted: () => relays.flatMap((r) => r.lines.filter((l) => l.msg === 'queued').map((l) => String(l.messageId))),
      stopOperator: async () => {
        await stopProcess(operator, 10_000);
        operator = undefined;
      },
      startOperator,
      rollRelays: async (until) => {
        // What a ConfigMap change does to the StatefulSet: its config hash changes, the Pods restart.
        const yaml = await field('the operator to render the new relay config', 'configmap', `${o.name}-relay-config`, '.data.relay\\.yaml', (y) => y !== runningYaml && until(y));
        for (let i = 0; i < relays.length; i++) {
          await stopProcess(relays[i]!.proc, 10_000);
          relays[i] = await spawnRelay(i, yaml);
        }
        runningYaml = yaml;
      },
      operatorLog: () => opLog.join(''),
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
