// A real Kubernetes control plane for tests and the demo: etcd and
// kube-apiserver (and optionally kube-controller-manager, so ownerReference
// garbage collection is real) on free loopback ports, built from Go modules by
// test/harness/build.sh. No mocked API server.
//
//   const cp = await startControlPlane();   // waits for /readyz
//   cp.kubeconfig                           // a kubeconfig file (static admin token)
//   await cp.restartApiServer();            // for "apiserver restarted mid-run" tests
//   await cp.stop();                        // always: kills everything, removes the temp dir
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, waitForDaemon as waitFor, type Daemon } from './process.js';

export interface ControlPlaneOptions {
  /** Also run kube-controller-manager (garbage collector, namespace controller). */
  controllerManager?: boolean;
  /**
   * For a cluster with a node (test/harness/cluster): the apiserver listens on
   * this address (reachable from pods) instead of 127.0.0.1, admits pods with
   * the ServiceAccount plugin (projected tokens), and kube-controller-manager
   * runs every controller (Deployments, StatefulSets, EndpointSlices, node
   * lifecycle, PV binding) and publishes the root CA to every namespace.
   */
  cluster?: { address: string };
  /** Print the processes' output to the console instead of only to log files. */
  verbose?: boolean;
}

export interface ControlPlane {
  dir: string;
  server: string;
  /** The apiserver's serving CA (PEM). */
  ca: Buffer;
  token: string;
  kubeconfig: string;
  /** Run kubectl against this control plane; throws with stderr on a non-zero exit. */
  kubectl(args: string[], input?: string): string;
  restartApiServer(): Promise<void>;
  /** Stops kube-controller-manager (a cluster stops it first, so nothing recreates the pods it removes). */
  stopControllerManager(): Promise<void>;
  stopApiServer(): Promise<void>;
  startApiServer(): Promise<void>;
  stop(): Promise<void>;
}

/** Directory holding etcd, kube-apiserver, kube-controller-manager, kubectl, helm. */
export function binDir(): string {
  const fromEnv = process.env.MC_KUBEBIN_DIR;
  const cache = process.env.MC_CACHE ?? join(homedir(), '.cache', 'mail-continuity');
  const recorded = join(cache, 'bin-dir');
  const dir = fromEnv || (existsSync(recorded) ? readFileSync(recorded, 'utf8').trim() : join(cache, 'bin', 'current'));
  if (!existsSync(join(dir, 'kube-apiserver'))) {
    throw new Error(`kube-apiserver not found in ${dir}: run 'make install' (test/harness/build.sh builds it)`);
  }
  return dir;
}

/**
 * A port that is free now, below the kernel's ephemeral range: a port the
 * kernel handed out (listen on 0) can be taken again as the local port of an
 * outgoing connection before the test's server binds it (EADDRINUSE), and the
 * tests open thousands of connections. Never the same port twice per process.
 */
export async function freePort(): Promise<number> {
  const range = await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').catch(() => '32768 60999');
  const low = Number(range.trim().split(/\s+/)[0]) || 32768;
  const from = Math.min(15_000, low - 1000);
  for (let i = 0; i < 200; i++) {
    const port = from + Math.floor(Math.random() * (low - from));
    if (handedOut.has(port)) continue;
    if (await canListen(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port in ${from}-${low - 1}`);
}
const handedOut = new Set<number>();

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

function get(url: string, token: string, ca: Buffer | undefined): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { headers: { Authorization: `Bearer ${token}` }, agent: new Agent({ ca, rejectUnauthorized: !!ca }), timeout: 2000 },
      (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const bins = binDir();
  const verbose = !!opts.verbose || process.env.MC_HARNESS_VERBOSE === '1';
  const dir = await mkdtemp(join(tmpdir(), 'mc-controlplane-'));
  const token = randomBytes(24).toString('hex');
  const [etcdClient, etcdPeer, apiPort, kcmPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const address = opts.cluster?.address ?? '127.0.0.1';
  const server = `https://${address}:${apiPort}`;

  // Service account signing key; a static token for the admin (system:masters).
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const saKey = join(dir, 'sa.key');
  const saPub = join(dir, 'sa.pub');
  await writeFile(saKey, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  await writeFile(saPub, publicKey.export({ type: 'spki', format: 'pem' }));
  await writeFile(join(dir, 'tokens.csv'), `${token},admin,admin,"system:masters"\n`);

  let etcd: Daemon | undefined;
  let apiserver: Daemon | undefined;
  let kcm: Daemon | undefined;
  let ca: Buffer | undefined;

  const startEtcd = async () => {
    etcd = startDaemon(
      'etcd',
      join(bins, 'etcd'),
      [
        `--name=default`,
        `--data-dir=${join(dir, 'etcd')}`,
        `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
        '--unsafe-no-fsync', // test data only: keeps 2-core CI machines fast
        '--log-level=warn',
      ],
      dir,
      { verbose },
    );
    await waitFor(
      'etcd /health',
      async () => {
        const res = await fetch(`http://127.0.0.1:${etcdClient}/health`);
        return res.ok && ((await res.json()) as { health?: string }).health === 'true';
      },
      30_000,
      etcd.died,
    );
  };

  const startApiServer = async () => {
    apiserver = startDaemon(
      'kube-apiserver',
      join(bins, 'kube-apiserver'),
      [
        `--etcd-servers=http://127.0.0.1:${etcdClient}`,
        `--bind-address=${address}`,
        `--advertise-address=${address}`,
        `--secure-port=${apiPort}`,
        `--cert-dir=${join(dir, 'certs')}`,
        `--token-auth-file=${join(dir, 'tokens.csv')}`,
        '--authorization-mode=RBAC',
        `--service-account-issuer=https://kubernetes.default.svc`,
        `--service-account-key-file=${saPub}`,
        `--service-account-signing-key-file=${saKey}`,
        '--service-cluster-ip-range=10.96.0.0/16',
        '--allow-privileged=true',
        '--enable-priority-and-fairness=false',
        // Without a node no pod runs, and the ServiceAccount plugin would refuse pods whose
        // ServiceAccount the (absent) controller has not created yet.
        opts.cluster ? '--enable-admission-plugins=ServiceAccount' : '--disable-admission-plugins=ServiceAccount',
        // kubectl logs/exec/port-forward reach the kubelet at the node's address (its name resolves nowhere).
        ...(opts.cluster ? ['--kubelet-preferred-address-types=InternalIP'] : []),
        '--watch-cache=true',
        '--v=0',
      ],
      dir,
      { verbose },
    );
    // The serving certificate is generated (self-signed, with its CA) into --cert-dir at start.
    const crt = join(dir, 'certs', 'apiserver.crt');
    await waitFor(
      'kube-apiserver /readyz',
      async () => {
        if (!existsSync(crt)) return false;
        ca ??= readFileSync(crt);
        const res = await get(`${server}/readyz`, token, ca);
        return res.status === 200;
      },
      90_000,
      apiserver.died,
    );
  };

  const kubeconfig = join(dir, 'kubeconfig');
  try {
    await startEtcd();
    await startApiServer();
    await writeFile(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        '- name: harness',
        '  cluster:',
        `    server: ${server}`,
        `    certificate-authority-data: ${ca!.toString('base64')}`,
        'users:',
        '- name: admin',
        '  user:',
        `    token: ${token}`,
        'contexts:',
        '- name: harness',
        '  context: {cluster: harness, user: admin, namespace: default}',
        'current-context: harness',
        '',
      ].join('\n'),
    );
    if (opts.controllerManager) {
      kcm = startDaemon(
        'kube-controller-manager',
        join(bins, 'kube-controller-manager'),
        [
          `--kubeconfig=${kubeconfig}`,
          `--authentication-kubeconfig=${kubeconfig}`,
          `--authorization-kubeconfig=${kubeconfig}`,
          ...(opts.cluster
            ? [
                '--controllers=*',
                `--root-ca-file=${join(dir, 'certs', 'apiserver.crt')}`,
                `--service-account-private-key-file=${saKey}`,
                // One node, no cloud: a node that stops reporting is not worth waiting 40 s for.
                '--node-monitor-grace-period=20s',
              ]
            : ['--controllers=garbagecollector,namespace']),
          '--leader-elect=false',
          '--bind-address=127.0.0.1',
          `--secure-port=${kcmPort}`,
          `--cert-dir=${join(dir, 'kcm-certs')}`,
          '--use-service-account-credentials=false',
          '--v=0',
        ],
        dir,
        { verbose },
      );
    }
  } catch (err) {
    await kcm?.stop();
    await apiserver?.stop();
    await etcd?.stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  const cp: ControlPlane = {
    dir,
    server,
    ca: ca!,
    token,
    kubeconfig,
    kubectl(args, input) {
      const res = spawnSync(join(bins, 'kubectl'), [`--kubeconfig=${kubeconfig}`, ...args], {
        input,
        encoding: 'utf8',
        timeout: 60_000,
      });
      if (res.status !== 0) {
        throw new Error(`kubectl ${args.join(' ')} failed (${res.status ?? res.signal}): ${res.stderr}`);
      }
      return res.stdout;
    },
    stopApiServer: async () => apiserver?.stop(),
    stopControllerManager: async () => kcm?.stop(),
    startApiServer,
    async restartApiServer() {
      await apiserver?.stop();
      await startApiServer();
    },
    async stop() {
      await kcm?.stop();
      await apiserver?.stop();
      await etcd?.stop();
      if (process.env.MC_HARNESS_KEEP !== '1') await rm(dir, { recursive: true, force: true });
    },
  };
  return cp;
}
