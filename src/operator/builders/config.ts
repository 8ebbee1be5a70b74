// The relay's config file, rendered from the spec into a ConfigMap. It holds
// no secret: Secrets are mounted as files and the config names their paths.
import YAML from 'yaml';
import type { MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import type { RelayConfigInput } from '../../api/relay/config.js';
import type { KubeObject } from '../kube/types.js';
import { childNames, metadata, sha256 } from './common.js';

export const CONFIG_DIR = '/etc/mail-continuity';
export const CONFIG_FILE = `${CONFIG_DIR}/config/relay.yaml`;
export const SPOOL_DIR = '/var/spool/mail-continuity';
export const HTTP_PORT = 8080;

export const mounts = {
  tls: `${CONFIG_DIR}/tls`,
  primary: `${CONFIG_DIR}/primary`,
  gmail: `${CONFIG_DIR}/gmail`,
  admin: `${CONFIG_DIR}/admin`,
  primaryCa: `${CONFIG_DIR}/primary-ca`,
  recipients: `${CONFIG_DIR}/recipients`,
};

/** The relay config's `google` section: loopback URLs of a Gmail emulator (the relay refuses any other). */
export type RelayGoogle = NonNullable<RelayConfigInput['google']>;

export function relayConfig(mc: MailContinuity, google?: RelayGoogle): RelayConfigInput {
  const spec = mc.spec;
  const gmailKey = spec.backup.gmail.serviceAccountSecretRef?.key;
  const caKey = spec.primary.caSecretRef?.key;
  // Without relay.replicas (no relay reads it): scaling must not change the
  // config hash, which would roll every relay (the draining ones too). Nor
  // relay.podTemplate: the pod template carries it, the relay has no use for it.
  const { replicas: _replicas, podTemplate: _podTemplate, ...relay } = spec.relay;
  return {
    spec: { ...spec, relay } as MailContinuity['spec'],
    listen: { host: '0.0.0.0', hostname: `${childNames(mc).service}.${mc.metadata.namespace}` },
    http: { host: '0.0.0.0', port: HTTP_PORT },
    paths: {
      spool: SPOOL_DIR,
      audit: `${SPOOL_DIR}/audit.log`,
      adminToken: `${mounts.admin}/token`,
      ...(spec.relay.tlsSecretRef ? { tlsCert: `${mounts.tls}/tls.crt`, tlsKey: `${mounts.tls}/tls.key` } : {}),
      ...(spec.primary.credentialsSecretRef
        ? { primaryUsername: `${mounts.primary}/username`, primaryPassword: `${mounts.primary}/password` }
        : {}),
      ...(gmailKey ? { gmailServiceAccount: `${mounts.gmail}/${gmailKey}` } : {}),
      ...(caKey ? { primaryCa: `${mounts.primaryCa}/${caKey}` } : {}),
      ...(spec.relay.recipients ? { recipients: `${mounts.recipients}/${spec.relay.recipients.configMapRef.key}` } : {}),
    },
    ...(google ? { google } : {}),
  };
}

export function configMap(mc: MailContinuity, google?: RelayGoogle): KubeObject & { data: Record<string, string> } {
  const text = YAML.stringify(relayConfig(mc, google), { lineWidth: 0 });
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: metadata(mc, childNames(mc).config),
    data: { 'relay.yaml': text },
  };
}

/** Changes whenever the relay must restart to see new config: its hash goes into the pod template. */
export const configHash = (cm: { data: Record<string, string> }) => sha256(cm.data['relay.yaml'] ?? '').slice(0, 16);
