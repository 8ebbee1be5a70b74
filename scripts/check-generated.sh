#!/usr/bin/env bash
# Fails when a generated file differs from what `make generate` writes: crds/,
# the chart's copy of the CRD, deploy/install.yaml and deploy/argocd/argocd-cm.yaml and argocd-values.yaml.
# Generates into a copy of the sources, so the clone is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/deploy/argocd"
cp -r charts "$tmp/charts"
cp deploy/argocd/health.lua "$tmp/deploy/argocd/health.lua"
scripts/generate.sh "$tmp" >/dev/null
stale=0
for path in crds charts/mail-continuity-operator/files/crds deploy/install.yaml deploy/argocd/argocd-cm.yaml deploy/argocd/argocd-values.yaml; do
  if ! diff -ru "$path" "$tmp/$path"; then
    echo "$path is stale: run 'make generate' and commit the result" >&2
    stale=1
  fi
done
[ $stale = 0 ] && echo "generated files up to date (crds/, chart CRD, deploy/install.yaml, argocd-cm.yaml, argocd-values.yaml)"
exit $stale
