// The operator's Secret reads: only the referenced Secrets, read again only when the name index
// shows a new version, forgotten once nobody references them; and the request metric's labels,
// which name kinds, never objects.
import { describe, expect, it } from '@jest/globals';
import { requestLabels } from '../../src/operator/kube/client.js';
import { cacheForm } from '../../src/operator/kube/informer.js';
import { SecretReader } from '../../src/operator/kube/secret-reader.js';
import type { KubeObject } from '../../src/operator/kube/types.js';

function setup() {
  const versions = new Map<string, string>([
    ['mail/gmail', '1'],
    ['mail/exchange', '7'],
  ]);
  const reads: string[] = [];
  const index = {
    get: (ns: string | undefined, name: string) => {
      const rv = versions.get(`${ns}/${name}`);
      return rv === undefined ? undefined : ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns, resourceVersion: rv } } as KubeObject);
    },
  };
  const client = {
    findByName: async <T extends KubeObject>(_t: unknown, ns: string | undefined, name: string) => {
      reads.push(`${ns}/${name}`);
      const rv = versions.get(`${ns}/${name}`);
      return (rv === undefined ? undefined : { metadata: { name, namespace: ns, resourceVersion: rv }, data: { v: rv } }) as T | undefined;
    },
  };
  return { reader: new SecretReader(client as never, index), versions, reads };
}

describe('SecretReader', () => {
  it('reads a referenced Secret once per version and answers from memory in between', async () => {
    const { reader, versions, reads } = setup();
    await reader.refresh('mail/corp', 'mail', ['gmail']);
    await reader.refresh('mail/corp', 'mail', ['gmail']);
    expect(reads).toEqual(['mail/gmail']);
    expect(reader.get('mail', 'gmail')?.data).toEqual({ v: '1' });
    versions.set('mail/gmail', '2');
    await reader.refresh('mail/corp', 'mail', ['gmail']);
    expect(reads).toEqual(['mail/gmail', 'mail/gmail']);
    expect(reader.get('mail', 'gmail')?.data).toEqual({ v: '2' });
    expect(reader.get('mail', 'exchange')).toBeUndefined(); // not referenced: never read
  });

  it('forgets a Secret that is gone, and one that nobody references any more', async () => {
    const { reader, versions } = setup();
    await reader.refresh('mail/a', 'mail', ['gmail', 'exchange']);
    await reader.refresh('mail/b', 'mail', ['gmail']);
    expect(reader.size).toBe(2);
    await reader.refresh('mail/a', 'mail', ['gmail']);
    expect(reader.get('mail', 'exchange')).toBeUndefined();
    reader.release('mail/a');
    expect(reader.get('mail', 'gmail')).toBeDefined(); // b still references it
    versions.delete('mail/gmail');
    await reader.refresh('mail/b', 'mail', ['gmail']);
    expect(reader.size).toBe(0);
  });

  it('fails the refresh when a read fails (the reconcile retries; it never goes on without it)', async () => {
    const { reader } = setup();
    const failing = new SecretReader({ findByName: () => Promise.reject(new Error('503')) } as never, {
      get: () => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'gmail', resourceVersion: '1' } }),
    });
    await expect(failing.refresh('mail/corp', 'mail', ['gmail'])).rejects.toThrow('503');
    expect(reader.size).toBe(0);
  });
});

describe('what the informers keep', () => {
  const obj = {
    apiVersion: 'x',
    kind: 'ConfigMap',
    metadata: {
      name: 'c',
      namespace: 'mail',
      resourceVersion: '3',
      uid: 'u',
      labels: { a: 'b' },
      managedFields: [{ manager: 'm' }],
      annotations: { keep: 'yes', 'kubectl.kubernetes.io/last-applied-configuration': '{"data":"copy"}' },
    },
    data: { config: 'x' },
  } as unknown as KubeObject;

  it('drops managedFields and kubectl’s last-applied copy, keeps the rest', () => {
    const kept = cacheForm(obj, 'v1');
    expect(kept.metadata).not.toHaveProperty('managedFields');
    expect(kept.metadata.annotations).toEqual({ keep: 'yes' });
    expect(kept).toMatchObject({ apiVersion: 'v1', data: { config: 'x' }, metadata: { labels: { a: 'b' } } });
  });

  it('keeps identity and version only for a metadata-only informer', () => {
    expect(cacheForm(obj, 'v1', true)).toEqual({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'c', namespace: 'mail', uid: 'u', resourceVersion: '3' },
    });
  });
});

describe('requestLabels', () => {
  it.each([
    ['GET', '/api/v1/namespaces/mail/secrets?fieldSelector=metadata.name%3Dx', 'list', 'secrets'],
    ['GET', '/api/v1/namespaces/mail/secrets/x', 'get', 'secrets'],
    ['PATCH', '/apis/apps/v1/namespaces/mail/statefulsets/corp-relay?fieldManager=m', 'patch', 'statefulsets'],
    ['PATCH', '/apis/mailcontinuity.io/v1alpha1/namespaces/mail/mailcontinuities/corp/status', 'patch', 'mailcontinuities/status'],
    ['GET', '/api/v1/namespaces/mail/pods/corp-relay-0/proxy/admin/queue', 'get', 'pods/proxy'],
    ['GET', '/apis/mailcontinuity.io/v1alpha1/mailcontinuities', 'list', 'mailcontinuities'],
    ['GET', '/api/v1/namespaces', 'list', 'namespaces'],
  ])('%s %s: %s %s', (method, path, verb, resource) => {
    expect(requestLabels(method, path)).toEqual({ verb, resource });
  });
});
