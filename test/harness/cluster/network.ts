// The node's network, made by the harness and removed by it: a Linux bridge
// that the CNI bridge plugin attaches pods to, the node's address on it (the
// apiserver, Postfix and the Gmail emulator listen there, so pods reach them
// and traffic never leaves the machine), and the two sysctls Kubernetes
// networking needs (forwarding, and iptables seeing bridged traffic so a pod
// reaching a Service on its own bridge is DNATed by kube-proxy's rules).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const BRIDGE = 'mc-br0';
/** The node's address: the bridge's, and the pods' default gateway. */
export const NODE_IP = '10.244.0.1';
export const POD_CIDR = '10.244.0.0/24';
/** Must match the apiserver's --service-cluster-ip-range (controlplane.ts). */
export const SERVICE_CIDR = '10.96.0.0/16';
export const CNI_BIN_DIR = '/usr/lib/cni';

const SYSCTLS = ['/proc/sys/net/ipv4/ip_forward', '/proc/sys/net/bridge/bridge-nf-call-iptables'];

export interface NodeNetwork {
  cniConfDir: string;
  /** Restores the sysctls, deletes the bridge and whatever netns the runtime left behind. */
  teardown(): void;
}

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function bridgeExists(): boolean {
  return existsSync(`/sys/class/net/${BRIDGE}`);
}

/** Network namespaces the container runtime made (`cni-<uuid>` under /var/run/netns). */
export function cniNetns(): string[] {
  try {
    return readdirSync('/var/run/netns').filter((n) => n.startsWith('cni-'));
  } catch {
    return [];
  }
}

const TABLES = ['filter', 'nat', 'mangle'];
const OURS = /^(KUBE|CNI)-/;

/** Every table of IPv4 and IPv6 with its rules as `iptables -S` prints them. */
function tables(): { bin: string; table: string; rules: string[] }[] {
  return ['iptables', 'ip6tables'].flatMap((bin) =>
    TABLES.map((table) => ({ bin, table, rules: execFileSync(bin, ['-t', table, '-S'], { encoding: 'utf8' }).split('\n') })),
  );
}

/** The KUBE-* and CNI-* chains (kubelet, kube-proxy, the CNI plugins) of a table's rules. */
const chainsOf = (rules: string[]) =>
  rules.map((l) => /^-N (\S+)/.exec(l)?.[1]).filter((c): c is string => !!c && OURS.test(c));

/** Chains named KUBE-* or CNI-* per table, IPv4 and IPv6, as "BIN TABLE CHAIN". */
export function kubeChains(): string[] {
  return tables().flatMap(({ bin, table, rules }) => chainsOf(rules).map((c) => `${bin} ${table} ${c}`));
}

/**
 * Removes what the node's parts added to iptables and kept after they stopped
 * (kube-proxy --cleanup removes its own rules, not the kubelet's KUBE-FIREWALL
 * and canary chains): rules jumping to a KUBE-/CNI- chain, then the chains.
 */
export function removeKubeChains(keep: Set<string> = new Set()): void {
  const ipt = (bin: string, args: string[]) => execFileSync(bin, args, { stdio: 'ignore' });
  for (const { bin, table, rules } of tables()) {
    const chains = chainsOf(rules).filter((c) => !keep.has(`${bin} ${table} ${c}`));
    const ours = new Set(chains);
    for (const rule of rules) {
      const m = /^-A (\S+) (?:(.*) )?-j (\S+)/.exec(rule);
      if (m && ours.has(m[3]!) && !ours.has(m[1]!)) {
        ipt(bin, ['-t', table, '-D', m[1]!, ...splitRule(m[2] ?? ''), '-j', m[3]!]);
      }
    }
    for (const c of chains) ipt(bin, ['-t', table, '-F', c]);
    for (const c of chains) ipt(bin, ['-t', table, '-X', c]);
  }
}

/** A rule's arguments as iptables -S prints them: quoted words (with \" inside) kept whole. */
export function splitRule(text: string): string[] {
  return [...text.matchAll(/"((?:[^"\\]|\\.)*)"|(\S+)/g)].map((m) => (m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!));
}

/** Unmounts and removes these network namespaces of /var/run/netns (what a stopped runtime left). */
export function removeNetns(names: string[]): void {
  for (const ns of names) {
    try {
      execFileSync('umount', [`/var/run/netns/${ns}`], { stdio: 'ignore' });
    } catch {
      // not mounted any more
    }
    rmSync(`/var/run/netns/${ns}`, { force: true });
  }
}

export async function setupNetwork(dir: string): Promise<NodeNetwork> {
  if (bridgeExists()) {
    throw new Error(
      `network: bridge ${BRIDGE} already exists (another cluster of the harness runs, or one was not cleaned up: ip link del ${BRIDGE})`,
    );
  }
  const saved = SYSCTLS.map((f) => {
    if (!existsSync(f)) throw new Error(`network: ${f} is missing (br_netfilter is needed for Services on a bridge)`);
    return readFileSync(f, 'utf8').trim();
  });
  const netnsBefore = new Set(cniNetns());
  const chainsBefore = new Set(kubeChains());
  ip(['link', 'add', BRIDGE, 'type', 'bridge']);
  ip(['addr', 'add', `${NODE_IP}/24`, 'dev', BRIDGE]);
  ip(['link', 'set', BRIDGE, 'up']);
  for (const f of SYSCTLS) writeFileSync(f, '1');

  const cniConfDir = join(dir, 'cni', 'net.d');
  await mkdir(cniConfDir, { recursive: true });
  // One bridge network: host-local addresses from POD_CIDR (its state in our
  // dir, not /var/lib/cni), masquerade for traffic leaving the pod network,
  // hairpin so a pod reaches itself through its Service, portmap for hostPort.
  // containerd's CRI adds the loopback interface itself.
  await writeFile(
    join(cniConfDir, '10-mc-bridge.conflist'),
    JSON.stringify(
      {
        cniVersion: '0.4.0',
        name: 'mc-pods',
        plugins: [
          {
            type: 'bridge',
            bridge: BRIDGE,
            isGateway: true,
            ipMasq: true,
            hairpinMode: true,
            ipam: {
              type: 'host-local',
              dataDir: join(dir, 'cni', 'ipam'),
              ranges: [[{ subnet: POD_CIDR, gateway: NODE_IP }]],
              routes: [{ dst: '0.0.0.0/0' }],
            },
          },
          { type: 'portmap', capabilities: { portMappings: true }, snat: true },
        ],
      },
      null,
      2,
    ),
  );

  return {
    cniConfDir,
    teardown() {
      removeNetns(cniNetns().filter((ns) => !netnsBefore.has(ns)));
      removeKubeChains(chainsBefore);
      if (bridgeExists()) ip(['link', 'del', BRIDGE]);
      SYSCTLS.forEach((f, i) => writeFileSync(f, saved[i]!));
    },
  };
}
