// The `operator` process: flags, logging, metrics and health endpoints,
// leader election, the controller.
import { setMaxListeners } from 'node:events';
import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { parseDuration } from '../api/v1alpha1/formats.js';
import type { RelayGoogle } from './builders/index.js';
import { isLoopbackUrl } from '../lib/ip.js';
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
  --local-relay NS/NAME=URL[,URL] relays of NS/NAME are local processes with these admin base URLs
                                 (no kubelet: the demo and tests); repeatable. Default: the relay Pods
  --relay-google-root-url URL    only for tests and the demo: the relays' Gmail API clients use this
  --relay-google-token-url URL   root URL and OAuth2 token URL (a Gmail emulator). The relay accepts
                                 loopback URLs only (its own pod's), so credentials never go elsewhere
`;

function duration(flag: string, text: string): number {
  const ms = parseDuration(text);
  if (Number.isNaN(ms)) throw new Error(`--${flag}: "${text}" is not a duration such as "15s" or "2m"`);
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
      throw new Error(`--${flag}: "${url}" is not a loopback URL (127.0.0.0/8, ::1, localhost); the relays would refuse it`);
    }
  }
  return { ...(rootUrl ? { rootUrl } : {}), ...(tokenUrl ? { tokenUrl } : {}) };
}

export async function runOperator(argv: string[]): Promise<number> {
  const { values } = parseArgs({
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
  const log = pino({ level: values['log-level'], base: { component: 'operator' } });
  const metrics = operatorMetrics();
  const client = KubeClient.fromFile(values.kubeconfig, (verb, resource) =>
    metrics.apiRequests.inc({ verb, resource }),
  );
  const workers = Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1)
    throw new Error(`--workers: "${values.workers}" is not a positive integer`);

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
  const server = serveHealth(values['metrics-bind-address']!, metrics.registry, () => controller.synced);
  let exitCode = 0;
  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down');
    stop.abort();
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));

  if (values['leader-elect'] === 'false') {
    await controller.start();
    await new Promise<void>((r) => stop.signal.addEventListener('abort', () => r(), { once: true }));
  } else {
    const identity = `${process.env.POD_NAME ?? hostname()}_${process.pid}`;
    const elector = new LeaderElector(client, {
      namespace: values['leader-election-namespace']!,
      name: values['leader-election-id']!,
      identity,
      leaseDurationMs: duration('lease-duration', values['lease-duration']!),
      renewDeadlineMs: duration('renew-deadline', values['renew-deadline']!),
      retryPeriodMs: duration('retry-period', values['retry-period']!),
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
