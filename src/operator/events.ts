// Kubernetes Events about a MailContinuity (failover start/end, replay done,
// misconfiguration), as `kubectl describe mc` shows them. A repeat of the same
// reason and message within a few minutes bumps the count of the existing
// Event instead of creating a new one.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { MailContinuity } from '../api/v1alpha1/mailcontinuity.js';
import type { KubeClient, KubeObject } from './kube/client.js';
import { EVENTS } from './kube/resources.js';

export type EventType = 'Normal' | 'Warning';

export class EventRecorder {
  private readonly recent = new Map<string, { name: string; count: number; first: string; at: number }>();

  constructor(
    private readonly client: KubeClient,
    private readonly component: string,
    private readonly log: Logger,
  ) {}

  async record(mc: MailContinuity, type: EventType, reason: string, message: string): Promise<void> {
    const ns = mc.metadata.namespace ?? 'default';
    const now = new Date().toISOString();
    const dedup = `${ns}/${mc.metadata.name}/${type}/${reason}/${message}`;
    const seen = this.recent.get(dedup);
    const involvedObject = {
      apiVersion: mc.apiVersion,
      kind: mc.kind,
      name: mc.metadata.name,
      namespace: ns,
      uid: mc.metadata.uid,
      resourceVersion: mc.metadata.resourceVersion,
    };
    try {
      if (seen && Date.now() - seen.at < 10 * 60_000) {
        seen.count += 1;
        seen.at = Date.now();
        await this.client.mergePatch(EVENTS, ns, seen.name, { count: seen.count, lastTimestamp: now });
        return;
      }
      const name = `${mc.metadata.name}.${Date.now().toString(16)}${randomBytes(2).toString('hex')}`;
      const event: KubeObject = {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name, namespace: ns },
        involvedObject,
        type,
        reason,
        message: message.slice(0, 1024),
        source: { component: this.component },
        reportingComponent: this.component,
        reportingInstance: process.env.POD_NAME ?? this.component,
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
      };
      await this.client.create(EVENTS, event);
      this.recent.set(dedup, { name, count: 1, first: now, at: Date.now() });
      if (this.recent.size > 1000) this.recent.delete(this.recent.keys().next().value!);
    } catch (err) {
      // An Event is a courtesy: failing to write one never fails a reconcile.
      this.log.warn({ err: (err as Error).message, reason }, 'could not record event');
    }
  }
}
