#!/usr/bin/env bash
# Installs kube-score (the Kubernetes manifest linter users run) with
# `go install` into the cache outside the clone, one binary per version.
# Idempotent: a second run finds the binary and prints its path at once.
set -euo pipefail
cache=${MC_CACHE:-$HOME/.cache/mail-continuity}
export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/cache GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
version=v1.20.0   # the version test/kube-score-waivers.yaml was reviewed against
# Under tools/, not bin/: build.sh prunes bin/kube-* other than its own build.
out=$cache/tools/kube-score-$version
if [ ! -x "$out/kube-score" ]; then
  printf "[harness] %s go install kube-score %s\n" "$(date +%H:%M:%S)" "$version" >&2
  mkdir -p "$out.tmp"
  GOBIN=$out.tmp go install -trimpath -ldflags="-s -w" "github.com/zegl/kube-score/cmd/kube-score@$version"
  rm -rf "$out"; mv "$out.tmp" "$out"
fi
echo "$out/kube-score"
