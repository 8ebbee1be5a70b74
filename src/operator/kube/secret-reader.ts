// The users' Secrets a MailContinuity references, and only those, read
// when they appear or change. The operator does not cache every Secret
// of the cluster: a metadata-only informer (names and resourceVersions, no
// data) tells it that a Secret appeared, changed or went; this reader then
// fetches the referenced ones whose version it has not read yet (a list
// limited to the name: the RBAC it needs is the list the watch needs, no get),
// and forgets a Secret once no MailContinuity references it any more.
import type { KubeClient, KubeObject } from './client.js';
import type { Informer } from './informer.js';
import { SECRETS } from './resources.js';

type Secret = KubeObject & { data?: Record<string, string> };

interface Entry {
  resourceVersion: string | undefined;
  secret: Secret;
}

export class SecretReader {
  /** Read Secrets by `namespace/name`. */
  private readonly read = new Map<string, Entry>();
  /** The Secrets each MailContinuity referenced at its last refresh, by its key. */
  private readonly refs = new Map<string, string[]>();
  /** Reads done (the tests' witness). */
  reads = 0;

  constructor(
    private readonly client: Pick<KubeClient, 'findByName'>,
    /** Every Secret's name and version (a metadata-only informer). */
    private readonly index: Pick<Informer<KubeObject>, 'get'>,
  ) {}

  /** Secrets held with their data. */
  get size(): number {
    return this.read.size;
  }

  /** The Secret as last read, if it exists and is referenced. */
  get(namespace: string, name: string): Secret | undefined {
    return this.read.get(`${namespace}/${name}`)?.secret;
  }

  /**
   * Brings the Secrets `owner` (a MailContinuity's key) references up to date: reads those the
   * index shows at a version not read yet, drops those the index no longer has, and forgets the
   * ones nobody references any more. A read that fails is thrown: the reconcile fails and is
   * retried, it never goes on with a Secret it could not read.
   */
  async refresh(owner: string, namespace: string, names: readonly string[]): Promise<void> {
    const keys = [...new Set(names)].map((n) => `${namespace}/${n}`);
    const before = this.refs.get(owner);
    if (keys.length > 0) this.refs.set(owner, keys);
    else this.refs.delete(owner);
    await Promise.all(keys.map((key, i) => this.update(key, namespace, names[i]!)));
    for (const key of before ?? []) if (!keys.includes(key)) this.dropIfUnreferenced(key);
  }

  /** `owner` is gone: its Secrets are forgotten unless another one references them. */
  release(owner: string): void {
    const keys = this.refs.get(owner);
    this.refs.delete(owner);
    for (const key of keys ?? []) this.dropIfUnreferenced(key);
  }

  private async update(key: string, namespace: string, name: string): Promise<void> {
    const meta = this.index.get(namespace, name);
    if (!meta) {
      this.read.delete(key);
      return;
    }
    const held = this.read.get(key);
    if (held && held.resourceVersion === meta.metadata.resourceVersion) return;
    this.reads++;
    const secret = await this.client.findByName<Secret>(SECRETS, namespace, name);
    if (!secret) {
      this.read.delete(key); // gone since the index saw it: its deletion event follows
      return;
    }
    this.read.set(key, {
      resourceVersion: meta.metadata.resourceVersion,
      secret: {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name, namespace, resourceVersion: secret.metadata.resourceVersion },
        data: secret.data,
      },
    });
  }

  private dropIfUnreferenced(key: string): void {
    for (const keys of this.refs.values()) if (keys.includes(key)) return;
    this.read.delete(key);
  }
}
