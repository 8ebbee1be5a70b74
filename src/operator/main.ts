// The `operator` process: flags, logging, metrics and health endpoints,
// leader election, the controller.
import { setMaxListeners } from 'node:events';
import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import { parseDuration } from '../api/v1alpha1/formats.js';
import type { RelayGoogle } from './builders/index.js';
import { missingFile, oneOf, parseCommandArgs, UsageError, withUsage } from '../lib/cli-args.js';
import { isLoopbackUrl } from '../lib/ip.js';
import { createLogger, LOG_FORMATS, LOG_LEVELS } from '../lib/log.js';
import { Controller } from './controller.js';
import { allowedRelayImages, relayAccessFromFlags } from './flags.js';
import { KubeClient } from './kube/client.js';
import { LeaderElector } from './leader.js';
import { operatorMetrics } from './metrics.js';

export const operatorUsage = `usage: mail-continuity operator [flags]

  --kubeconfig FILE              kubeconfig (default: in-cluster, then ~/.kube/config)
  --namespace NS                 watch only this namespace (default: all namespaces)
  --relay-image IMAGE            relay image when spec.relay.image is empty
  --allowed-relay-images LIST    images spec.relay.image may name, comma-separated: an entry ending in
                                 "/", ":" or "@" is a prefix (ghcr.io/mail-continuity/,registry.corp/),
                                 any other a repository (all its tags). Default: the repository of
                                 --relay-image; another image stalls the MailContinuity
  --operator-namespace NS        the operator's namespace (default: $POD_NAMESPACE): its Pods may reach
                                 the relays' admin port (the relay NetworkPolicy)
  --operator-pod-labels K=V[,..] labels of the operator's Pods in that namespace (default: any Pod there)
  --metrics-scraper-namespace-labels K=V[,..]
  --metrics-scraper-pod-labels K=V[,..]
                                 a metrics scraper that may reach the relays' /metrics (default: none)
  --workers N                    parallel reconciles (default 4)
  --metrics-bind-address ADDR    /metrics, /healthz, /readyz (default :8080; 0 disables)
  --leader-elect=false           run without leader election (one replica only)
  --leader-election-namespace NS namespace of the Lease (default: $POD_NAMESPACE or default)
  --leader-election-id NAME      name of the Lease (default mail-continuity-operator)
  --lease-duration D             default 15s
  --renew-deadline D             default 10s
  --retry-period D               default 2s
  --resync-period D              full relist of every watch (default 10m)
  --log-level LEVEL              debug, info, warn, error (default info)
  --log-format FORMAT            json (default: one JSON object a line, for log collectors) or text
                                 (ISO time, level name, message, key=value: for people); the relays
                                 the operator runs log in the same format
  --local-relay NS/NAME=URL[,URL] relays of NS/NAME are local processes with these admin base URLs
                                 (no kubelet: the demo and tests); repeatable. Default: the relay Pods
  --relay-google-root-url URL    only for tests and the demo: the relays' Gmail API clients use this
  --relay-google-token-url URL   root URL and OAuth2 token URL (a Gmail emulator). The relay accepts
                                 loopback URLs only (its own pod's), so credentials never go elsewhere
`;

function duration(flag: string, text: string): number {
  const ms = parseDuration(text);
  if (Number.isNaN(ms)) throw new UsageError(`--${flag}: "${text}" is not a duration such as "15s" or "2m"`);
  return ms;
}

/** The two test-only URLs as the relay config's `google` section; each must be a loopback URL. */
function relayGoogle(rootUrl: string | undefined, tokenUrl: string | undefined): RelayGoogle | undefined {
  if (rootUrl === undefined && tokenUrl === undefined) return undefined;
  for (const [flag, url] of [
    ['relay-google-root-url', rootUrl],
    ['relay-google-token-url', tokenUrl],
  ] as const) {
    if (url !== undefined && !isLoopbackUrl(url)) {
      throw new UsageError(`--${flag}: "${url}" is not a loopback URL (127.0.0.0/8, ::1, localhost); the relays would refuse it`);
    }
  }
  return { ...(rootUrl ? { rootUrl } : {}), ...(tokenUrl ? { tokenUrl } : {}) };
}

/** `operator` with its flags; a misuse is a UsageError (one line and this usage, exit 2). */
export function runOperator(argv: string[]): Promise<number> {
  return withUsage(operatorUsage, () => operator(argv));
}

async function operator(argv: string[]): Promise<number> {
  const { values } = parseCommandArgs(operatorUsage, {
    args: argv,
    options: {
      kubeconfig: { type: 'string' },
      namespace: { type: 'string' },
      'relay-image': {
        type: 'string',
        default: process.env.RELAY_IMAGE ?? 'ghcr.io/mail-continuity/mail-continuity-operator:0.1.0',
      },
      'operator-namespace': { type: 'string', default: process.env.POD_NAMESPACE },
      'operator-pod-labels': { type: 'string' },
      'metrics-scraper-namespace-labels': { type: 'string' },
      'metrics-scraper-pod-labels': { type: 'string' },
      'allowed-relay-images': { type: 'string' },
      workers: { type: 'string', default: '4' },
      'metrics-bind-address': { type: 'string', default: ':8080' },
      'leader-elect': { type: 'string', default: 'true' },
      'leader-election-namespace': { type: 'string', default: process.env.POD_NAMESPACE ?? 'default' },
      'leader-election-id': { type: 'string', default: 'mail-continuity-operator' },
      'lease-duration': { type: 'string', default: '15s' },
      'renew-deadline': { type: 'string', default: '10s' },
      'retry-period': { type: 'string', default: '2s' },
      'resync-period': { type: 'string', default: '10m' },
      'log-level': { type: 'string', default: 'info' },
      'log-format': { type: 'string', default: 'json' },
      'local-relay': { type: 'string', multiple: true },
      'relay-google-root-url': { type: 'string' },
      'relay-google-token-url': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(operatorUsage);
    return 0;
  }
  const logFormat = oneOf('log-format', values['log-format']!, LOG_FORMATS);
  const log = createLogger({
    format: logFormat,
    level: oneOf('log-level', values['log-level']!, LOG_LEVELS),
    base: { component: 'operator' },
  });
  const leaderElect = oneOf('leader-elect', values['leader-elect']!, ['true', 'false']);
  const workers = Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1)
    throw new UsageError(`--workers: "${values.workers}" is not a positive integer`);
  // Every flag is checked before anything starts: a misuse exits at once.
  const lease = {
    leaseDurationMs: duration('lease-duration', values['lease-duration']!),
    renewDeadlineMs: duration('renew-deadline', values['renew-deadline']!),
    retryPeriodMs: duration('retry-period', values['retry-period']!),
  };
  const bindAddress = values['metrics-bind-address']!;
  const bindPort = Number(bindAddress.slice(bindAddress.lastIndexOf(':') + 1));
  if (bindAddress !== '0' && (!bindAddress.includes(':') || !Number.isInteger(bindPort) || bindPort < 0 || bindPort > 65535))
    throw new UsageError(`--metrics-bind-address: "${bindAddress}" is not HOST:PORT or :PORT (e.g. :8080), or 0 to disable`);
  const metrics = operatorMetrics();
  const client = kubeClient(values.kubeconfig, (verb, resource) => metrics.apiRequests.inc({ verb, resource }));

  const controller = new Controller({
    client,
    log,
    metrics,
    fieldManager: 'mail-continuity-operator',
    defaultImage: values['relay-image']!,
    allowedRelayImages: allowedRelayImages(values['allowed-relay-images'], values['relay-image']!),
    namespace: values.namespace,
    workers,
    resyncMs: duration('resync-period', values['resync-period']!),
    localRelays: values['local-relay'],
    relayGoogle: relayGoogle(values['relay-google-root-url'], values['relay-google-token-url']),
    relayLogFormat: logFormat,
    relayAccess: relayAccessFromFlags({
      operatorNamespace: values['operator-namespace'],
      operatorPodLabels: values['operator-pod-labels'],
      scraperNamespaceLabels: values['metrics-scraper-namespace-labels'],
      scraperPodLabels: values['metrics-scraper-pod-labels'],
    }),
  });

  const stop = new AbortController();
  // Every informer's watch in flight (nine kinds), the leader election and the shutdown wait
  // listen on this signal: eleven, past Node's warning threshold of 10 (not a leak).
  setMaxListeners(32, stop.signal);
  const server = serveHealth(bindAddress, metrics.registry, () => controller.synced);
  let exitCode = 0;
  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down');
    stop.abort();
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));

  if (leaderElect === 'false') {
    await controller.start();
    await new Promise<void>((r) => stop.signal.addEventListener('abort', () => r(), { once: true }));
  } else {
    const identity = `${process.env.POD_NAME ?? hostname()}_${process.pid}`;
    const elector = new LeaderElector(client, {
      namespace: values['leader-election-namespace']!,
      name: values['leader-election-id']!,
      identity,
      ...lease,
      log,
    });
    log.info({ identity }, 'waiting for the leader Lease');
    await elector.run(
      stop.signal,
      () => {
        metrics.leader.set(1);
        controller.start().catch((err: unknown) => {
          log.error({ err }, 'controller failed to start');
          exitCode = 1;
          stop.abort();
        });
      },
      () => {
        metrics.leader.set(0);
        exitCode = 1; // a former leader's caches may be stale: exit and start over as a candidate
        stop.abort();
      },
    );
  }
  await controller.stop();
  server?.close();
  return exitCode;
}

/** The API client from --kubeconfig (a file that must exist) or the default places. */
function kubeClient(file: string | undefined, onRequest: Parameters<typeof KubeClient.fromFile>[1]): KubeClient {
  try {
    return KubeClient.fromFile(file, onRequest);
  } catch (err) {
    const hint = ' (omit the flag to use the in-cluster config or ~/.kube/config)';
    throw (file !== undefined && missingFile('kubeconfig', file, err, hint)) || err;
  }
}

function serveHealth(
  address: string,
  registry: ReturnType<typeof operatorMetrics>['registry'],
  ready: () => boolean,
): Server | undefined {
  if (address === '0') return undefined;
  const idx = address.lastIndexOf(':');
  const host = address.slice(0, idx) || '0.0.0.0';
  const port = Number(address.slice(idx + 1));
  const server = createServer((req, res) => {
    if (req.url === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    } else if (req.url === '/healthz') {
      res.writeHead(200).end('ok\n');
    } else if (req.url === '/readyz') {
      // A standby (not leader) is ready too: it can take over at once.
      res.writeHead(200).end(ready() ? 'ok: leading\n' : 'ok: standby\n');
    } else {
      res.writeHead(404).end();
    }
  });
  server.listen(port, host);
  return server;
}
