import { API_VERSION, PLURAL } from '../../api/v1alpha1/mailcontinuity.js';
import type { ResourceType } from './types.js';

export const MAILCONTINUITIES: ResourceType = { apiVersion: API_VERSION, resource: PLURAL, namespaced: true };
export const STATEFULSETS: ResourceType = { apiVersion: 'apps/v1', resource: 'statefulsets', namespaced: true };
export const SERVICES: ResourceType = { apiVersion: 'v1', resource: 'services', namespaced: true };
export const CONFIGMAPS: ResourceType = { apiVersion: 'v1', resource: 'configmaps', namespaced: true };
export const SECRETS: ResourceType = { apiVersion: 'v1', resource: 'secrets', namespaced: true };
export const SERVICEACCOUNTS: ResourceType = { apiVersion: 'v1', resource: 'serviceaccounts', namespaced: true };
export const PDBS: ResourceType = { apiVersion: 'policy/v1', resource: 'poddisruptionbudgets', namespaced: true };
export const NETWORKPOLICIES: ResourceType = { apiVersion: 'networking.k8s.io/v1', resource: 'networkpolicies', namespaced: true };
export const PODS: ResourceType = { apiVersion: 'v1', resource: 'pods', namespaced: true };
export const EVENTS: ResourceType = { apiVersion: 'v1', resource: 'events', namespaced: true };
export const LEASES: ResourceType = { apiVersion: 'coordination.k8s.io/v1', resource: 'leases', namespaced: true };

/** The owned kinds, by `kind`, in the order the informers are started. */
export const CHILD_TYPES: Record<string, ResourceType> = {
  ServiceAccount: SERVICEACCOUNTS,
  Secret: SECRETS,
  ConfigMap: CONFIGMAPS,
  Service: SERVICES,
  StatefulSet: STATEFULSETS,
  PodDisruptionBudget: PDBS,
  NetworkPolicy: NETWORKPOLICIES,
};
