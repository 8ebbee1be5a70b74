#!/usr/bin/env bash
# Fails when crds/ (and other generated files) differ from what `make generate` writes.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
npx tsx src/cli.ts generate --out "$tmp/crds" >/dev/null
if ! diff -ru crds "$tmp/crds"; then
  echo "crds/ is stale: run 'make generate' and commit the result" >&2
  exit 1
fi
echo "crds/ up to date"
