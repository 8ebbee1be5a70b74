// MailContinuity -> the relay StatefulSet: one pod per replica, each with its
// own spool volume, the config and Secrets mounted as files (never copied into
// the environment), restricted Pod Security, spread across nodes; placed by
// spec.relay.podTemplate (placement.ts).
import type { MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import type { LogFormat } from '../../lib/log.js';
import type { KubeObject } from '../kube/types.js';
import { ANNOTATION_CONFIG_HASH, childNames, labels, metadata, selectorLabels } from './common.js';
import { CONFIG_DIR, CONFIG_FILE, HTTP_PORT, SPOOL_DIR, mounts } from './config.js';
import { placement, podAnnotations, podLabels } from './placement.js';

export interface StatefulSetOptions {
  /** Image when spec.relay.image is empty: the operator's own image. */
  defaultImage: string;
  configHash: string;
  /** Replicas while relays drain before a scale-down (reconcile/scale-down.ts); default spec.relay.replicas. */
  replicas?: number;
  /** The relay's --log-format (default json: the flag is left out, as before it existed). */
  logFormat?: LogFormat;
}

const RUN_AS = 65532;

/**
 * The relay process's environment in its pod (the benchmarks run the relay
 * with the same): a heap cap below the default 256Mi limit, and glibc's
 * malloc held to one arena that gives freed memory back (with an arena per
 * libuv thread, memory freed after a burst of mail stays in the process:
 * building a 50,000-message backlog peaked at 171 MB RSS instead of 166 MB,
 * 141 MB instead of 135 MB at rest; throughput unchanged; bench/RESULTS.md).
 */
export const RELAY_PROCESS_ENV: Readonly<Record<string, string>> = {
  NODE_OPTIONS: '--max-old-space-size=192',
  MALLOC_ARENA_MAX: '1',
  MALLOC_TRIM_THRESHOLD_: '131072',
};

/**
 * The relay container's resources when spec.relay.resources is omitted. No CPU
 * limit: throttling an SMTP server under a burst only delays mail. Ephemeral
 * storage (the root file system is read-only and /tmp is memory: what is left
 * is the container's log) is limited only when the spool is a PVC: an emptyDir
 * spool counts against the pod's ephemeral-storage limit, and the kubelet
 * would evict the relay, losing its mail, instead of the relay refusing mail
 * when its volume is full.
 */
export function defaultResources(persistent: boolean): Record<string, Record<string, string>> {
  return {
    requests: { cpu: '100m', memory: '128Mi', 'ephemeral-storage': '64Mi' },
    limits: { memory: '256Mi', ...(persistent ? { 'ephemeral-storage': '256Mi' } : {}) },
  };
}

export function statefulSet(mc: MailContinuity, opts: StatefulSetOptions): KubeObject {
  const spec = mc.spec;
  const names = childNames(mc);
  const volumes: Record<string, unknown>[] = [
    { name: 'config', configMap: { name: names.config } },
    { name: 'admin', secret: { secretName: names.adminToken, defaultMode: 0o440 } },
    { name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } },
  ];
  const volumeMounts: Record<string, unknown>[] = [
    { name: 'config', mountPath: CONFIG_DIR + '/config', readOnly: true },
    { name: 'admin', mountPath: mounts.admin, readOnly: true },
    { name: 'spool', mountPath: SPOOL_DIR },
    { name: 'tmp', mountPath: '/tmp' },
  ];
  if (spec.relay.tlsSecretRef) {
    volumes.push({ name: 'tls', secret: { secretName: spec.relay.tlsSecretRef.name, defaultMode: 0o440 } });
    volumeMounts.push({ name: 'tls', mountPath: mounts.tls, readOnly: true });
  }
  if (spec.primary.credentialsSecretRef) {
    volumes.push({
      name: 'primary-credentials',
      secret: { secretName: spec.primary.credentialsSecretRef.name, defaultMode: 0o440 },
    });
    volumeMounts.push({ name: 'primary-credentials', mountPath: mounts.primary, readOnly: true });
  }
  const ca = spec.primary.caSecretRef;
  if (ca) {
    // Only the CA key: a cert-manager issuer Secret also holds the CA's private key.
    volumes.push({
      name: 'primary-ca',
      secret: { secretName: ca.name, defaultMode: 0o444, items: [{ key: ca.key, path: ca.key }] },
    });
    volumeMounts.push({ name: 'primary-ca', mountPath: mounts.primaryCa, readOnly: true });
  }
  const recipients = spec.relay.recipients?.configMapRef;
  if (recipients) {
    volumes.push({ name: 'recipients', configMap: { name: recipients.name, items: [{ key: recipients.key, path: recipients.key }] } });
    volumeMounts.push({ name: 'recipients', mountPath: mounts.recipients, readOnly: true });
  }
  const sa = spec.backup.gmail.serviceAccountSecretRef;
  if (sa) {
    volumes.push({
      name: 'gmail-service-account',
      secret: { secretName: sa.name, defaultMode: 0o440, items: [{ key: sa.key, path: sa.key }] },
    });
    volumeMounts.push({ name: 'gmail-service-account', mountPath: mounts.gmail, readOnly: true });
  }
  const persistence = spec.relay.persistence;
  if (!persistence.enabled) volumes.push({ name: 'spool', emptyDir: {} });

  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: metadata(mc, names.statefulSet),
    spec: {
      replicas: opts.replicas ?? spec.relay.replicas,
      serviceName: names.headlessService,
      podManagementPolicy: 'Parallel',
      updateStrategy: { type: 'RollingUpdate' },
      selector: { matchLabels: selectorLabels(mc) },
      persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Retain', whenScaled: 'Retain' },
      template: {
        metadata: {
          labels: podLabels(mc, labels(mc)),
          annotations: podAnnotations(mc, {
            [ANNOTATION_CONFIG_HASH]: opts.configHash,
            'kubectl.kubernetes.io/default-container': 'relay',
          }),
        },
        spec: {
          serviceAccountName: names.serviceAccount,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          // Room to finish writes in flight and hand over the SMTP sessions.
          terminationGracePeriodSeconds: 60,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: RUN_AS,
            runAsGroup: RUN_AS,
            fsGroup: RUN_AS,
            fsGroupChangePolicy: 'OnRootMismatch',
            seccompProfile: { type: 'RuntimeDefault' },
          },
          // nodeSelector, tolerations, affinity, priorityClassName, imagePullSecrets, spread.
          ...placement(mc),
          containers: [
            {
              name: 'relay',
              image: spec.relay.image ?? opts.defaultImage,
              args: ['relay', '--config', CONFIG_FILE, ...(opts.logFormat === 'text' ? ['--log-format', 'text'] : [])],
              env: [
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                ...Object.entries(RELAY_PROCESS_ENV).map(([name, value]) => ({ name, value })),
              ],
              ports: [
                { name: 'smtp', containerPort: spec.relay.port, protocol: 'TCP' },
                { name: 'http', containerPort: HTTP_PORT, protocol: 'TCP' },
              ],
              readinessProbe: {
                httpGet: { path: '/readyz', port: 'http' },
                periodSeconds: 5,
                failureThreshold: 2,
              },
              livenessProbe: {
                httpGet: { path: '/healthz', port: 'http' },
                periodSeconds: 10,
                failureThreshold: 6,
              },
              startupProbe: {
                httpGet: { path: '/healthz', port: 'http' },
                periodSeconds: 2,
                failureThreshold: 150, // resuming a large spool may take a while
              },
              resources: spec.relay.resources ?? defaultResources(persistence.enabled),
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                runAsNonRoot: true,
                capabilities: { drop: ['ALL'] },
                seccompProfile: { type: 'RuntimeDefault' },
              },
              volumeMounts,
            },
          ],
          volumes,
        },
      },
      ...(persistence.enabled
        ? {
            volumeClaimTemplates: [
              {
                apiVersion: 'v1',
                kind: 'PersistentVolumeClaim',
                metadata: { name: 'spool', labels: labels(mc) },
                spec: {
                  accessModes: ['ReadWriteOnce'],
                  resources: { requests: { storage: String(persistence.size) } },
                  ...(persistence.storageClassName ? { storageClassName: persistence.storageClassName } : {}),
                },
              },
            ],
          }
        : {}),
    },
  };
}

