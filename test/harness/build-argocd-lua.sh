#!/usr/bin/env bash
# Builds test/harness/cmd/argocd-lua (Argo CD's health-check evaluation in
# gopher-lua, the Lua VM Argo CD embeds) into the cache outside the clone,
# keyed by a hash of its sources. Idempotent: a second run finds the binary
# and prints its path at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${MC_CACHE:-$HOME/.cache/mail-continuity}
export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/cache GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
src=$here/cmd/argocd-lua
key=$(cat "$here/build-argocd-lua.sh" "$src/go.mod" "$src/go.sum" "$src"/*.go | sha256sum | cut -c1-12)
out=$cache/bin/argocd-lua-$key
if [ ! -x "$out" ]; then
  printf "[harness] %s compiling argocd-lua (gopher-lua %s)\n" "$(date +%H:%M:%S)" \
    "$(awk '$1=="require"{print $3}' "$src/go.mod")" >&2
  (cd "$src" && go build -trimpath -ldflags="-s -w" -o "$out.tmp" .)
  mv "$out.tmp" "$out"
  find "$cache/bin" -mindepth 1 -maxdepth 1 -name "argocd-lua-*" ! -path "$out" -exec rm -f {} +
fi
echo "$out"
