// Which relay images a MailContinuity may ask for. The relay Pod mounts the
// MailContinuity's Secrets (the Gmail key of a whole Workspace, Exchange
// credentials, the admin token): whoever picks spec.relay.image picks the code
// that reads them. The operator runs only images from the allowed list
// (--allowed-relay-images; default: the repository of its own relay image).
// Pure.
import type { MailContinuity } from '../../api/v1alpha1/mailcontinuity.js';
import type { Stall } from '../status.js';

export const RELAY_IMAGE_NOT_ALLOWED = 'RelayImageNotAllowed';

/** The repository of an image reference: without its tag and digest (a registry port stays). */
export function imageRepository(image: string): string {
  const noDigest = image.split('@')[0]!;
  const colon = noDigest.lastIndexOf(':');
  return colon > noDigest.lastIndexOf('/') ? noDigest.slice(0, colon) : noDigest;
}

/**
 * Whether `image` matches an entry of `allowed`: an entry ending in "/", ":" or "@" is a prefix
 * (a registry, an organisation, a repository's tags); any other entry is a repository, whose
 * every tag and digest is allowed.
 */
export function imageAllowed(image: string, allowed: readonly string[]): boolean {
  return allowed.some((entry) =>
    /[/:@]$/.test(entry) ? image.startsWith(entry) : imageRepository(image) === entry,
  );
}

/** The Stall when spec.relay.image is set to an image outside `allowed` (undefined: allowed or unset). */
export function relayImageStall(mc: MailContinuity, allowed: readonly string[]): Stall | undefined {
  const image = mc.spec.relay.image;
  if (image === undefined || imageAllowed(image, allowed)) return undefined;
  return {
    reason: RELAY_IMAGE_NOT_ALLOWED,
    message:
      `spec.relay.image "${image}" is not an allowed relay image (allowed: ${allowed.join(', ')}): ` +
      `remove spec.relay.image to run the operator's relay image, or ask the operator's administrator ` +
      `to allow it (--allowed-relay-images, chart value allowedRelayImages)`,
  };
}
