// Which relay images a MailContinuity may name (pure), and the flag that lists them.
import { describe, expect, it } from '@jest/globals';
import { allowedRelayImages } from '../../src/operator/flags.js';
import { decide } from '../../src/operator/reconcile/decide.js';
import { imageAllowed, imageRepository, relayImageStall } from '../../src/operator/reconcile/relay-image.js';
import { liveOf } from '../fixtures/live.js';
import { parsedMailContinuity } from '../fixtures/mailcontinuity.js';

const mc = (image?: string) => parsedMailContinuity((s) => void (image && (s.relay = { ...s.relay, image })));

describe('relay images', () => {
  it('takes the repository of an image: without tag or digest, keeping a registry port', () => {
    expect(imageRepository('ghcr.io/mail-continuity/mail-continuity-operator:0.1.0')).toBe('ghcr.io/mail-continuity/mail-continuity-operator');
    expect(imageRepository('registry.corp:5000/mail/relay@sha256:abc')).toBe('registry.corp:5000/mail/relay');
    expect(imageRepository('registry.corp:5000/mail/relay:1.2@sha256:abc')).toBe('registry.corp:5000/mail/relay');
    expect(imageRepository('busybox')).toBe('busybox');
  });

  it('matches prefixes that end in a separator, and whole repositories otherwise', () => {
    const allowed = ['ghcr.io/mail-continuity/', 'registry.corp/', 'docker.io/acme/relay'];
    expect(imageAllowed('ghcr.io/mail-continuity/mail-continuity-operator:0.2.0', allowed)).toBe(true);
    expect(imageAllowed('registry.corp/team/relay@sha256:abc', allowed)).toBe(true);
    expect(imageAllowed('docker.io/acme/relay:7', allowed)).toBe(true);
    expect(imageAllowed('docker.io/acme/relay-evil:7', allowed)).toBe(false);
    expect(imageAllowed('registry.corp.evil.example/relay:1', allowed)).toBe(false);
    expect(imageAllowed('ghcr.io/mail-continuity-evil/x:1', allowed)).toBe(false);
  });

  it('stalls a MailContinuity that names another image, saying what to do; no image set is always fine', () => {
    const allowed = ['example/mc'];
    expect(relayImageStall(mc(), allowed)).toBeUndefined();
    expect(relayImageStall(mc('example/mc:2'), allowed)).toBeUndefined();
    expect(relayImageStall(mc('evil.example/steal:1'), allowed)).toEqual({
      reason: 'RelayImageNotAllowed',
      message: expect.stringContaining('spec.relay.image "evil.example/steal:1" is not an allowed relay image (allowed: example/mc)'),
    });
  });

  it('decide: by default only the repository of the operator relay image; nothing applied otherwise', () => {
    const opts = { defaultImage: 'example/mc:1', now: new Date('2026-12-03T10:00:00Z') };
    const stalled = decide(liveOf(mc('evil.example/steal:1')), opts);
    expect(stalled.apply).toEqual([]);
    expect(stalled.stall?.reason).toBe('RelayImageNotAllowed');
    expect(stalled.stallEvent).toMatchObject({ type: 'Warning', reason: 'RelayImageNotAllowed' });
    expect(decide(liveOf(mc('example/mc:2')), opts).stall).toBeUndefined();
    expect(decide(liveOf(mc('evil.example/steal:1')), { ...opts, allowedImages: ['evil.example/'] }).stall).toBeUndefined();
  });

  it('reads --allowed-relay-images, defaulting to the relay image repository', () => {
    expect(allowedRelayImages(undefined, 'ghcr.io/mail-continuity/mail-continuity-operator:0.1.0')).toEqual([
      'ghcr.io/mail-continuity/mail-continuity-operator',
    ]);
    expect(allowedRelayImages(' ghcr.io/mail-continuity/, registry.corp/ ', 'x:1')).toEqual(['ghcr.io/mail-continuity/', 'registry.corp/']);
    expect(() => allowedRelayImages('ghcr.io/a b', 'x:1')).toThrow(/--allowed-relay-images: "ghcr.io\/a b"/);
  });
});
