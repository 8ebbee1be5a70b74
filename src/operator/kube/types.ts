// The shapes of Kubernetes objects and resource types the operator works
// with, without any client: the builders and other pure code import these,
// never the HTTP client (client.ts).
import type { ObjectMeta, OwnerReference } from '../../api/meta.js';

export type { ObjectMeta, OwnerReference };

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export interface KubeList<T extends KubeObject = KubeObject> {
  items: T[];
  metadata: { resourceVersion?: string; continue?: string };
}

export interface WatchEvent<T extends KubeObject = KubeObject> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

/** Where a resource lives in the API: `/api/v1/namespaces/ns/secrets` and friends. */
export interface ResourceType {
  apiVersion: string;
  /** Plural resource name, e.g. "statefulsets". */
  resource: string;
  namespaced: boolean;
}
