#!/usr/bin/env bash
# make test: typecheck, lint, generated files up to date, then the jest suites
# unit, integration (real kube-apiserver + etcd), e2e (Postfix, swaks, the
# Gmail emulator) and cluster (the image, the chart and the product in a real
# one-node cluster: one at a time, since the node's bridge and iptables rules
# are the machine's). Every suite runs even when an earlier one failed; the last
# line is the sum of all of them.
set -uo pipefail
cd "$(dirname "$0")/.."
rc=0
step() { printf '\n[test] %s %s\n' "$(date +%H:%M:%S)" "$*"; }
export MC_KUBEBIN_DIR=${MC_KUBEBIN_DIR:-$(cat "${MC_CACHE:-$HOME/.cache/mail-continuity}/bin-dir")}
export NODE_OPTIONS="--experimental-vm-modules ${NODE_OPTIONS:-}"

step "typecheck (tsc --noEmit)"; npx tsc --noEmit -p tsconfig.json || rc=1
step "lint (eslint)"; npx eslint . || rc=1
step "generated files up to date"; scripts/check-generated.sh || rc=1

mkdir -p .test-results
rm -f .test-results/*.json
for suite in unit integration e2e cluster; do
  step "jest: $suite"
  # Integration and e2e tests mostly wait on real servers and timers, so three files run at
  # once even on two cores (jest would run one); the cluster owns the node's bridge and
  # iptables rules and runs alone.
  case $suite in
    cluster) workers=(--runInBand) ;;
    integration | e2e) workers=(--maxWorkers="${JEST_WORKERS:-3}") ;;
    *) workers=() ;;
  esac
  npx jest --selectProjects "$suite" "${workers[@]}" --json --outputFile ".test-results/$suite.json" \
    ${JEST_ARGS:-} || rc=1
done
step "summary"
node scripts/summarize.mjs || rc=1
exit $rc
