// A MailContinuity stored before the CRD refused names its children cannot
// carry (over 46 characters, a dot, a digit first) is stopped at gather, before
// anything is applied, with the reason the schema would give.
import { describe, expect, it } from '@jest/globals';
import { API_VERSION, type MailContinuity } from '../../src/api/v1alpha1/mailcontinuity.js';
import type { Informer } from '../../src/operator/kube/informer.js';
import type { KubeObject } from '../../src/operator/kube/types.js';
import { gather, type GatherSources } from '../../src/operator/reconcile/gather.js';
import { validSpec } from '../fixtures/mailcontinuity.js';

const informer = <T>(objs: T[]) =>
  ({ get: (_ns: string, name: string) => objs.find((o) => (o as KubeObject).metadata.name === name) }) as unknown as Informer<T & KubeObject>;

function sources(name: string): GatherSources {
  const mc = { apiVersion: API_VERSION, kind: 'MailContinuity', metadata: { name, namespace: 'mail', uid: 'u1' }, spec: validSpec() };
  const none = informer<KubeObject>([]);
  return {
    caches: {
      mailContinuities: informer([mc as unknown as MailContinuity & KubeObject]),
      children: { Secret: none, StatefulSet: none, Service: none, ConfigMap: none },
      secrets: { get: () => undefined },
    },
    failover: { record: () => undefined, tally: () => undefined, relays: () => undefined, scaleDown: () => undefined },
    newToken: () => 'tok',
  };
}

describe('gather', () => {
  it('gathers a MailContinuity whose name its children can carry', () => {
    expect(gather(sources('corp'), 'mail', 'corp').kind).toBe('live');
    expect(gather(sources('c'.repeat(46)), 'mail', 'c'.repeat(46)).kind).toBe('live');
  });

  it.each([
    ['c'.repeat(47), 'at most 46 characters'],
    ['corp.example', 'no dots'],
  ])('stops %s before anything is applied, saying why', (name, says) => {
    const seen = gather(sources(name), 'mail', name);
    expect(seen).toMatchObject({ kind: 'invalid', message: expect.stringContaining(says) });
    expect((seen as { message: string }).message).toMatch(/^metadata\.name: /);
  });
});
