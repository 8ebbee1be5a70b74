// kubectl mailcontinuity against the stack (a real apiserver, the operator
// process, a relay process, Postfix as Exchange, the Gmail emulator), through
// the apiserver only: the relay is reached by the pod proxy of a Pod object
// that stands for it (no kubelet runs here: its status carries this machine's
// non-loopback address, where a TCP relay forwards to the relay's admin port;
// the apiserver refuses to proxy to loopback). With Exchange down, status shows
// what waits per relay and queue list lists it; a user whose RBAC lacks
// pods/proxy gets Forbidden naming that permission; kubectl finds the plugin on PATH.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { createServer, connect, type Server } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { binDir, freePort } from '../harness/controlplane.js';
import { swaks } from '../harness/smtp-tools.js';
import { FAST_RELAY_TUNING, loopbackSpec, startStack, type Stack } from '../harness/stack.js';
import { waitFor } from '../harness/wait.js';

const USER = 'alice@corp.example.com';
let stack: Stack;
let forward: Server | undefined;

/** This machine's first non-loopback IPv4 address (the apiserver proxies to no loopback address). */
function hostAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}
const HOST = hostAddress();

/** Runs a command without blocking this process, which forwards the relay's port meanwhile. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: 30_000, env }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ code, out: stdout, err: stderr });
    });
  });
}

const plugin = (args: string[], kubeconfig = stack.cp.kubeconfig) =>
  run(process.execPath, ['--import', 'tsx', 'src/plugin/main.ts', `--kubeconfig=${kubeconfig}`, ...args]);

beforeAll(async () => {
  if (!HOST) throw new Error('no non-loopback IPv4 address on this machine: the pod proxy test needs one');
  stack = await startStack({
    name: 'corp',
    namespace: 'mail',
    domains: ['corp.example.com'],
    gmailUsers: [USER],
    spec: loopbackSpec({ domain: 'corp.example.com', periodSeconds: 1, failureThreshold: 3, successThreshold: 1, messageDeadline: '15m', maxMessagesPerSecond: 20 }),
    tuning: FAST_RELAY_TUNING,
    progress: (l) => process.env.MC_TEST_LOG && console.log(l),
  });
  // The relay's admin port on this machine's address, as a Pod IP would be.
  const target = Number(new URL(stack.relays[0]!.adminUrl).port);
  const port = await freePort();
  forward = createServer((c) => {
    const up = connect(target, '127.0.0.1');
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => forward!.listen(port, HOST, () => r()));
  const k = (args: string[], input?: string) => stack.kubectl(['-n', 'mail', ...args], input);
  k(['create', 'serviceaccount', 'default']);
  k(
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'corp-relay-0', labels: { 'mailcontinuity.io/name': 'corp', 'app.kubernetes.io/managed-by': 'mail-continuity-operator' } },
      spec: { automountServiceAccountToken: false, containers: [{ name: 'relay', image: 'example/relay', ports: [{ name: 'http', containerPort: port }] }] },
    }),
  );
  k(['patch', 'pod', 'corp-relay-0', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { phase: 'Running', podIP: HOST, podIPs: [{ ip: HOST }] } })]);
}, 240_000);

afterAll(async () => {
  forward?.close();
  await stack?.stop();
}, 60_000);

describe('kubectl mailcontinuity', () => {
  it('status and queue list show what waits for Exchange during an outage, through the pod proxy', async () => {
    await waitFor('PrimaryHealthy=True', () => stack.condition('PrimaryHealthy')?.status === 'True', 60_000);
    // No automatic failover for now: mail waits in the spool, none goes to Gmail yet.
    stack.kubectl(['-n', 'mail', 'patch', 'mailcontinuity', 'corp', '--type=merge', '-p', '{"spec":{"failover":{"manual":"Inactive"}}}']);
    await waitFor('FailoverActive=False ManualInactive', () => stack.condition('FailoverActive')?.reason === 'ManualInactive', 30_000);
    await stack.postfix.stop();
    for (const id of ['plugin-1', 'plugin-2']) {
      expect((await swaks({ port: stack.smtp.port, to: USER, headers: [`Message-ID: <${id}@partner.example.net>`] })).code).toBe(0);
    }
    await waitFor('both deferred at the relay', async () => (await stack.relayState(0)).queuedPrimary === 2, 30_000);

    const list = await plugin(['queue', 'list', 'corp', '-n', 'mail', '-o', 'json']);
    expect({ code: list.code, err: list.err }).toEqual({ code: 0, err: '' });
    const items = (JSON.parse(list.out) as { items: { pod: string; messageId: string; destinations: Record<string, { pending: string[] }> }[] }).items;
    expect(items.map((i) => `${i.pod} ${i.messageId} ${i.destinations.primary!.pending.join(',')}`).sort()).toEqual([
      `corp-relay-0 plugin-1@partner.example.net ${USER}`,
      `corp-relay-0 plugin-2@partner.example.net ${USER}`,
    ]);
    const table = await plugin(['queue', 'list', 'corp', '-n', 'mail', '--sender', 'sender@partner.example.net']);
    expect(table.out.split('\n')[0]).toMatch(/^RELAY\s+ID\s+AGE\s+STATE\s+FROM\s+WAITING-FOR\s+MESSAGE-ID$/);
    expect(table.out).toContain(`exchange:${USER}`);
    expect((await plugin(['queue', 'list', 'corp', '-n', 'mail', '--state', 'held'])).out).toBe('no message waiting\n');

    const status = await plugin(['status', 'corp', '-n', 'mail']);
    expect(status.code).toBe(0);
    expect(status.out).toContain('mail/corp   mode FailoverOnly, failover.manual Inactive');
    expect(status.out).toMatch(/FailoverActive\s+False \(ManualInactive\)/);
    expect(status.out).toMatch(/PrimaryHealthy\s+(True|False|Unknown) \(/);
    expect(status.out).toMatch(/RELAY\s+FOR-EXCHANGE\s+FOR-GMAIL\s+HELD\s+DEFERRED\s+OLDEST\ncorp-relay-0\s+2\s+0\s+0\s+[02]\s+\d+s/);
    const json = JSON.parse((await plugin(['status', 'corp', '-n', 'mail', '-o', 'json'])).out) as { relays: unknown[] };
    expect(json.relays).toEqual([expect.objectContaining({ pod: 'corp-relay-0', queuedPrimary: 2, queuedBackup: 0 })]);

    // kubectl finds it on PATH as a plugin.
    const bin = join(stack.dir, 'bin');
    await mkdir(bin, { recursive: true });
    await writeFile(join(bin, 'kubectl-mailcontinuity'), `#!/bin/sh\ncd ${process.cwd()} && exec ${process.execPath} --import tsx src/plugin/main.ts "$@"\n`);
    await chmod(join(bin, 'kubectl-mailcontinuity'), 0o755);
    // (kubectl takes no flag before a plugin's name: the kubeconfig comes from KUBECONFIG.)
    const viaKubectl = await run(join(binDir(), 'kubectl'), ['mailcontinuity', 'queue', 'list', 'corp', '-n', 'mail', '-o', 'json'], {
      ...process.env,
      PATH: `${bin}:${process.env.PATH}`,
      KUBECONFIG: stack.cp.kubeconfig,
    });
    expect(viaKubectl.err).toBe('');
    expect((JSON.parse(viaKubectl.out) as { items: unknown[] }).items).toHaveLength(2);
  }, 120_000);

  it('hold keeps a message out of Gmail when the failover starts, release sends it, flush delivers when Exchange is back', async () => {
    const ids = JSON.parse((await plugin(['queue', 'list', 'corp', '-n', 'mail', '-o', 'json'])).out) as { items: { id: string; messageId: string }[] };
    const held = ids.items.find((i) => i.messageId === 'plugin-1@partner.example.net')!.id;
    expect(stack.gmail.messages(USER)).toEqual([]);
    const hold = await plugin(['queue', 'hold', 'corp', held, '-n', 'mail', '--reason', 'suspected phishing']);
    expect({ code: hold.code, out: hold.out, err: hold.err }).toEqual({ code: 0, out: `hold: ${held} held\n`, err: '' });
    stack.kubectl(['-n', 'mail', 'patch', 'mailcontinuity', 'corp', '--type=merge', '-p', '{"spec":{"failover":{"manual":"Active"}}}']);
    const inGmail = (id: string) => stack.gmail.messages(USER).filter((m) => m.rfc822MessageId === id).length;
    await waitFor('the other message in Gmail', () => inGmail('plugin-2@partner.example.net') === 1, 30_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(inGmail('plugin-1@partner.example.net')).toBe(0);
    expect((await plugin(['queue', 'release', 'corp', held, '-n', 'mail'])).code).toBe(0);
    await waitFor('the released message in Gmail', () => inGmail('plugin-1@partner.example.net') === 1, 30_000);
    expect((await plugin(['queue', 'retry', 'corp', 'no-such-id', '-n', 'mail'])).err).toContain('no relay of mail/corp has message no-such-id');

    await stack.postfix.start();
    expect((await plugin(['queue', 'flush', 'corp', '-n', 'mail'])).code).toBe(0);
    await stack.postfix.waitFor((m) => ['plugin-1', 'plugin-2'].every((id) => m.some((x) => x.messageId === `${id}@partner.example.net`)), 30_000, 'both at Postfix');
    // The relay's audit log names the user the apiserver authenticated.
    const audit = (await stack.auditLog()).map((l) => JSON.parse(l) as { action: string; reason: string | null });
    expect(audit.filter((a) => a.action === 'held' || a.action === 'released').map((a) => `${a.action} ${a.reason}`)).toEqual([
      'held admin admin: suspected phishing',
      'released admin admin',
    ]);
    stack.kubectl(['-n', 'mail', 'patch', 'mailcontinuity', 'corp', '--type=merge', '-p', '{"spec":{"failover":{"manual":"Auto"}}}']);
  }, 120_000);

  it('a user without pods/proxy gets Forbidden naming that permission (exit 4)', async () => {
    const k = (args: string[], input?: string) => stack.kubectl(['-n', 'mail', ...args], input);
    k(['create', 'serviceaccount', 'viewer']);
    k(['create', 'role', 'mc-viewer', '--verb=get,list', '--resource=mailcontinuities.mailcontinuity.io,pods,secrets']);
    k(['create', 'rolebinding', 'mc-viewer', '--role=mc-viewer', '--serviceaccount=mail:viewer']);
    const token = k(['create', 'token', 'viewer']).trim();
    const kubeconfig = join(stack.dir, 'viewer.kubeconfig');
    await writeFile(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{name: c, cluster: {server: "' + stack.cp.server + '", certificate-authority-data: ' + stack.cp.ca.toString('base64') + '}}]',
        'users: [{name: viewer, user: {token: ' + token + '}}]',
        'contexts: [{name: v, context: {cluster: c, user: viewer, namespace: mail}}]',
        'current-context: v',
      ].join('\n'),
    );
    const r = await plugin(['queue', 'list', 'corp'], kubeconfig);
    expect(r.code).toBe(4);
    expect(r.err).toContain('kubectl mailcontinuity: forbidden: get pods/proxy mail/corp-relay-0 (GET /admin/queue)');
    expect(r.err).toContain('cannot get resource "pods/proxy"');
    const hold = await plugin(['queue', 'hold', 'corp', 'some-id'], kubeconfig);
    expect(hold.code).toBe(4);
    expect(hold.err).toContain('forbidden: create pods/proxy mail/corp-relay-0 (POST /admin/queue/some-id/hold)');
    // What the Role allows works: the resource's status, each relay saying what is missing.
    const s = await plugin(['status', 'corp'], kubeconfig);
    expect(s.code).toBe(0);
    expect(s.out).toContain('mail/corp   mode FailoverOnly');
    expect(s.out).toMatch(/corp-relay-0 .*unreachable: forbidden: get pods\/proxy mail\/corp-relay-0/);
  }, 60_000);
});
