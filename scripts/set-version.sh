#!/usr/bin/env bash
# The release version has one source: package.json's "version". This script writes it
# everywhere else a version is spelled out, or checks that they all agree:
#   scripts/set-version.sh 0.2.0          write 0.2.0 into package.json and every place below
#   scripts/set-version.sh --check [V]    exit 1, naming each file that disagrees with V
#                                         (default: package.json's version)
# Places: package.json and package-lock.json, the chart's version and appVersion (NOTES.txt
# and the image tag follow .Chart.AppVersion), the Dockerfile's VERSION label, the operator's
# default relay image (src/operator/main.ts), Argo CD's targetRevision (deploy/argocd,
# deploy/gitops), and the image tags, chart versions and release links in README.md and docs/.
# deploy/install.yaml follows the chart: run `make generate` after a change.
set -euo pipefail
cd "$(dirname "$0")/.."
check=
if [ "${1:-}" = --check ]; then check=1; shift; fi
version=${1:-$(node -p 'require("./package.json").version')}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$ ]] || { echo "set-version: '$version' is not a version like 1.2.3" >&2; exit 2; }
v='[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?'

# FILE|REGEX: the version is what the regex matches after \K (perl syntax).
places=(
  'package.json|^  "version": "\K'"$v"
  'charts/mail-continuity-operator/Chart.yaml|^version: \K'"$v"
  'charts/mail-continuity-operator/Chart.yaml|^appVersion: "\K'"$v"
  'Dockerfile|^ARG VERSION=\K'"$v"
  'Dockerfile|mail-continuity-operator:\K'"$v"
  'src/operator/main.ts|ghcr\.io/mail-continuity/mail-continuity-operator:\K'"$v"
  'deploy/install.yaml|ghcr\.io/mail-continuity/mail-continuity-operator:\K'"$v"
)
for f in deploy/argocd/*.yaml $(find deploy/gitops -name '*.yaml' 2>/dev/null | sort); do
  places+=("$f|targetRevision: v\K$v")
done
for f in README.md $(find docs -name '*.md' 2>/dev/null | sort); do
  places+=("$f|mail-continuity-operator[:-]\K$v" "$f|--version \K$v" "$f|/(raw|releases/download|tree)/v\K$v"
    "$f|git tag v\K$v" "$f|VERSION=\K$v" "$f|targetRevision: v\K$v")
done

bad=0
for p in "${places[@]}"; do
  file=${p%%|*} re=${p#*|}
  [ -f "$file" ] || continue
  if [ -n "$check" ]; then
    while read -r found; do
      [ -z "$found" ] || [ "$found" = "$version" ] && continue
      echo "set-version: $file says $found, not $version" >&2
      bad=1
    done < <(grep -oP -e "$re" "$file" || true)
  elif [ "$file" != deploy/install.yaml ]; then
    perl -pi -e "s{$re}{$version}g" "$file"
  fi
done
if [ -z "$check" ]; then
  node -e '
    const fs = require("fs");
    const lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
    lock.version = process.argv[1];
    if (lock.packages?.[""]) lock.packages[""].version = process.argv[1];
    fs.writeFileSync("package-lock.json", JSON.stringify(lock, null, 2) + "\n");' "$version"
  echo "version $version written; run 'make generate' for deploy/install.yaml"
fi
exit $bad
