#!/usr/bin/env bash
# Builds the real Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kubectl as one multi-call binary) and helm from Go
# modules into a cache outside the clone, keyed by the versions in go.mod and
# a hash of this module. Idempotent: a second run finds the binaries and
# returns at once. Prints a progress line per step.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${MC_CACHE:-$HOME/.cache/mail-continuity}
export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/cache GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
kube=$(awk '$1=="k8s.io/kubernetes"{print $2}' "$here/go.mod")
helmv=$(awk '$1=="helm.sh/helm/v3"{print $2}' "$here/go.mod")
key=$(cat "$here/build.sh" "$here/go.mod" "$here/go.sum" "$here"/cmd/kubebin/*.go | sha256sum | cut -c1-12)
out=$cache/bin/kube-$kube-helm-$helmv-$key
step() { printf "[harness] %s %s\n" "$(date +%H:%M:%S)" "$*" >&2; }
if [ -x "$out/kubebin" ] && [ -x "$out/helm" ]; then
  step "control plane $kube and helm $helmv cached in $out"
  echo "$out"; exit 0
fi
mkdir -p "$out.tmp"
cd "$here"
step "downloading Go modules for kubernetes $kube, etcd and helm $helmv (cached in $GOMODCACHE)"
go mod download
step "compiling kubebin (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl): the first build takes about 10 minutes on 2 cores"
minor=$(echo "$kube" | cut -d. -f2)
kv=k8s.io/component-base/version
go build -trimpath -ldflags="-s -w -X $kv.gitVersion=$kube -X $kv.gitMajor=1 -X $kv.gitMinor=$minor -X $kv.gitTreeState=clean" \
  -o "$out.tmp/kubebin" ./cmd/kubebin
step "compiling helm $helmv"
go build -trimpath -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helmv" -o "$out.tmp/helm" helm.sh/helm/v3/cmd/helm
for n in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do ln -sf kubebin "$out.tmp/$n"; done
rm -rf "$out"; mv "$out.tmp" "$out"
ln -sfn "$out" "$cache/bin/current"
# Older builds are of no use any more.
find "$cache/bin" -mindepth 1 -maxdepth 1 -name "kube-*" ! -path "$out" -exec rm -rf {} +
step "built into $out"
echo "$out"
