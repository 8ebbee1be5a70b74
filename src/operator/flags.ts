// Operator flags that are more than a string: label sets (the NetworkPolicy's
// peers), the allowed relay images. Each error names the flag and the expected form.
import { UsageError } from '../lib/cli-args.js';
import type { RelayAccess } from './builders/index.js';
import { imageRepository } from './reconcile/relay-image.js';

const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

/** `a=b,c=d` as labels; empty or absent: undefined. */
export function parseLabels(flag: string, text: string | undefined): Record<string, string> | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  const labels: Record<string, string> = {};
  for (const pair of text.split(',')) {
    const eq = pair.indexOf('=');
    const key = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (eq < 0 || !LABEL_KEY.test(key) || !LABEL_VALUE.test(value)) {
      throw new UsageError(`--${flag}: "${pair}" is not a label such as app.kubernetes.io/name=mail-continuity-operator (KEY=VALUE[,KEY=VALUE...])`);
    }
    labels[key] = value;
  }
  return labels;
}

export interface AccessFlags {
  operatorNamespace?: string;
  operatorPodLabels?: string;
  scraperNamespaceLabels?: string;
  scraperPodLabels?: string;
}

/** Who may reach the relays' HTTP port, from the flags. */
export function relayAccessFromFlags(f: AccessFlags): RelayAccess {
  const podLabels = parseLabels('operator-pod-labels', f.operatorPodLabels);
  const namespaceLabels = parseLabels('metrics-scraper-namespace-labels', f.scraperNamespaceLabels);
  const scraperPods = parseLabels('metrics-scraper-pod-labels', f.scraperPodLabels);
  return {
    ...(f.operatorNamespace ? { operator: { namespace: f.operatorNamespace, podLabels: podLabels ?? {} } } : {}),
    ...(namespaceLabels || scraperPods
      ? { metricsScraper: { ...(namespaceLabels ? { namespaceLabels } : {}), ...(scraperPods ? { podLabels: scraperPods } : {}) } }
      : {}),
  };
}

const IMAGE_ENTRY = /^[a-z0-9][a-z0-9._\-/:@]*$/i;

/** --allowed-relay-images (comma-separated); absent or empty: the repository of the relay image. */
export function allowedRelayImages(text: string | undefined, relayImage: string): string[] {
  const entries = (text ?? '').split(',').map((e) => e.trim()).filter((e) => e !== '');
  for (const e of entries) {
    if (!IMAGE_ENTRY.test(e) || e.includes('..')) {
      throw new UsageError(`--allowed-relay-images: "${e}" is not a registry or repository such as ghcr.io/mail-continuity/ or registry.corp/mail/relay`);
    }
  }
  return entries.length > 0 ? entries : [imageRepository(relayImage)];
}
