// Storage for the relays' spool PVCs: a default StorageClass of pre-provisioned
// local PersistentVolumes (WaitForFirstConsumer), one directory each.
//
// Why not a dynamic provisioner: the one built into kube-controller-manager
// (--enable-hostpath-provisioner) makes hostPath volumes, root-owned 0750, and
// the kubelet applies no fsGroup to hostPath: the relay (uid 65532, restricted
// Pod Security, no init container running as root) could not write its spool.
// The kubelet does apply fsGroup to `local` volumes, as on a real node, and
// every other provisioner runs from an image that cannot be pulled here.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { NODE_NAME } from './node.js';

export const STORAGE_CLASS = 'local-spool';

/** The StorageClass and `count` PersistentVolumes as one YAML stream (kubectl apply -f -). */
export async function localVolumes(dir: string, count: number): Promise<string> {
  const docs: string[] = [
    JSON.stringify({
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name: STORAGE_CLASS, annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } },
      provisioner: 'kubernetes.io/no-provisioner',
      volumeBindingMode: 'WaitForFirstConsumer',
      reclaimPolicy: 'Retain',
    }),
  ];
  for (let i = 0; i < count; i++) {
    const path = join(dir, 'volumes', `pv-${i}`);
    await mkdir(path, { recursive: true });
    docs.push(
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: { name: `local-pv-${i}` },
        spec: {
          // A local volume's capacity is what the scheduler matches claims against; the
          // directory shares the machine's disk (the relay's free-space check sees the truth).
          capacity: { storage: '20Gi' },
          accessModes: ['ReadWriteOnce'],
          persistentVolumeReclaimPolicy: 'Retain',
          storageClassName: STORAGE_CLASS,
          local: { path },
          nodeAffinity: {
            required: {
              nodeSelectorTerms: [
                { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [NODE_NAME] }] },
              ],
            },
          },
        },
      }),
    );
  }
  return docs.join('\n---\n');
}
