// The operator's Prometheus metrics (prom-client), on their own registry.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function operatorMetrics() {
  const registry = new Registry();
  let cacheSizes: () => Record<string, number> = () => ({});
  collectDefaultMetrics({ register: registry, prefix: 'mail_continuity_operator_' });
  const m = {
    registry,
    reconciles: new Counter({
      name: 'mail_continuity_operator_reconcile_total',
      help: 'Reconciles by result (Applied, UpToDate, Stalled, Gone, Error).',
      labelNames: ['result'],
      registers: [registry],
    }),
    reconcileErrors: new Counter({
      name: 'mail_continuity_operator_reconcile_errors_total',
      help: 'Reconciles that failed and were retried with backoff.',
      registers: [registry],
    }),
    reconcileDuration: new Histogram({
      name: 'mail_continuity_operator_reconcile_duration_seconds',
      help: 'Duration of one reconcile, by result.',
      labelNames: ['result'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'mail_continuity_operator_workqueue_depth',
      help: 'Keys waiting in the work queue.',
      registers: [registry],
    }),
    queueAdds: new Counter({
      name: 'mail_continuity_operator_workqueue_adds_total',
      help: 'Keys added to the work queue.',
      registers: [registry],
    }),
    queueRetries: new Counter({
      name: 'mail_continuity_operator_workqueue_retries_total',
      help: 'Keys re-added with backoff after an error.',
      registers: [registry],
    }),
    apiRequests: new Counter({
      name: 'mail_continuity_operator_api_requests_total',
      help: 'Requests to the Kubernetes API by verb and resource.',
      labelNames: ['verb', 'resource'],
      registers: [registry],
    }),
    informerRestarts: new Counter({
      name: 'mail_continuity_operator_informer_restarts_total',
      help: 'Informer list+watch restarts after an error, by resource and reason.',
      labelNames: ['resource', 'reason'],
      registers: [registry],
    }),
    failoverActive: new Gauge({
      name: 'mailcontinuity_failover_active',
      help: '1 while failover is active for a MailContinuity (mail goes to Gmail), else 0.',
      labelNames: ['namespace', 'name'],
      registers: [registry],
    }),
    primaryHealthy: new Gauge({
      name: 'mailcontinuity_primary_healthy',
      help: "The primary's health after hysteresis: 1 healthy, 0 unhealthy, -1 unknown.",
      labelNames: ['namespace', 'name'],
      registers: [registry],
    }),
    relayPushErrors: new Counter({
      name: 'mail_continuity_operator_relay_sync_errors_total',
      help: 'Failed calls to a relay admin endpoint (failover state not delivered).',
      registers: [registry],
    }),
    cachedObjects: new Gauge({
      name: 'mail_continuity_operator_cached_objects',
      help: 'Objects the operator holds in memory, by resource ("secrets/metadata": names and versions only).',
      labelNames: ['resource'],
      registers: [registry],
      collect() {
        for (const [resource, n] of Object.entries(cacheSizes())) this.set({ resource }, n);
      },
    }),
    /** Where cachedObjects reads the sizes from (the controller). */
    setCacheSource(source: () => Record<string, number>) {
      cacheSizes = source;
    },
    leader: new Gauge({
      name: 'mail_continuity_operator_leader',
      help: '1 while this process holds the leader Lease.',
      registers: [registry],
    }),
  };
  return m;
}

export type OperatorMetrics = ReturnType<typeof operatorMetrics>;
