// Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules:
// a candidate takes the Lease only when its holder has not renewed it for
// leaseDuration as measured on the candidate's own clock (no trust in other
// clocks); the leader renews every retryPeriod and steps down when it could
// not renew for renewDeadline. Updates carry the resourceVersion, so two
// candidates cannot both win (409 Conflict for the loser).
import type { Logger } from 'pino';
import { isConflict, isNotFound, type KubeClient, type KubeObject } from './kube/client.js';
import { LEASES } from './kube/resources.js';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  log: Logger;
}

interface Lease extends KubeObject {
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

/** metav1.MicroTime: RFC 3339 with microseconds. */
const microTime = (d: Date) => d.toISOString().replace(/Z$/, '000Z');
const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

export class LeaderElector {
  private observedRecord = '';
  private observedAt = 0;
  private leading = false;

  constructor(
    private readonly client: KubeClient,
    private readonly opts: LeaderElectionOptions,
  ) {
    if (opts.renewDeadlineMs >= opts.leaseDurationMs) throw new Error('--renew-deadline must be shorter than --lease-duration');
    if (opts.retryPeriodMs >= opts.renewDeadlineMs) throw new Error('--retry-period must be shorter than --renew-deadline');
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /**
   * Blocks until this process leads, then runs `lead` and keeps renewing.
   * Resolves when leadership is lost (the caller should exit: its caches and
   * queue may be behind the new leader) or the signal aborts (then it releases
   * the Lease so a successor need not wait for it to expire).
   */
  async run(signal: AbortSignal, lead: () => void, lost: () => void): Promise<void> {
    const { log, retryPeriodMs, renewDeadlineMs } = this.opts;
    while (!signal.aborted && !(await this.tryAcquireOrRenew())) await sleep(retryPeriodMs * (1 + Math.random() * 0.2), signal);
    if (signal.aborted) return;
    this.leading = true;
    log.info({ lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.opts.identity }, 'became leader');
    lead();
    let lastRenew = Date.now();
    while (!signal.aborted) {
      await sleep(retryPeriodMs, signal);
      if (signal.aborted) break;
      if (await this.tryAcquireOrRenew()) {
        lastRenew = Date.now();
      } else if (Date.now() - lastRenew > renewDeadlineMs) {
        this.leading = false;
        log.error({ lease: this.opts.name }, 'lost the leader Lease: stepping down');
        lost();
        return;
      }
    }
    await this.release();
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity, leaseDurationMs } = this.opts;
    const now = new Date();
    const spec = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(leaseDurationMs / 1000),
      acquireTime: microTime(now),
      renewTime: microTime(now),
      leaseTransitions: 0,
    };
    let lease: Lease;
    try {
      lease = await this.client.get<Lease>(LEASES, namespace, name);
    } catch (err) {
      if (!isNotFound(err)) return this.failed(err);
      try {
        await this.client.create<Lease>(LEASES, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec,
        });
        this.observe(JSON.stringify(spec));
        return true;
      } catch (createErr) {
        return this.failed(createErr);
      }
    }
    const current = lease.spec ?? {};
    const record = JSON.stringify(current);
    if (record !== this.observedRecord) this.observe(record);
    const held = current.holderIdentity && current.holderIdentity !== identity;
    const durationMs = (current.leaseDurationSeconds ?? 0) * 1000;
    if (held && this.observedAt + durationMs > Date.now()) return false;
    const next = {
      ...spec,
      acquireTime: held || !current.acquireTime ? spec.acquireTime : current.acquireTime,
      leaseTransitions: (current.leaseTransitions ?? 0) + (current.holderIdentity === identity ? 0 : 1),
    };
    try {
      await this.client.replace<Lease>(LEASES, { ...lease, spec: next });
      this.observe(JSON.stringify(next));
      return true;
    } catch (err) {
      return this.failed(err);
    }
  }

  private observe(record: string) {
    this.observedRecord = record;
    this.observedAt = Date.now();
  }

  private failed(err: unknown): false {
    if (!isConflict(err)) this.opts.log.warn({ err: (err as Error).message }, 'leader election: lease update failed');
    return false;
  }

  private async release(): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    try {
      const lease = await this.client.get<Lease>(LEASES, this.opts.namespace, this.opts.name);
      if (lease.spec?.holderIdentity !== this.opts.identity) return;
      await this.client.replace<Lease>(LEASES, {
        ...lease,
        spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(new Date()) },
      });
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'could not release the leader Lease');
    }
  }
}
