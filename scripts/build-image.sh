#!/usr/bin/env bash
# Builds the product's image from the real Dockerfile on a machine with no
# container registry, with buildah (vfs storage, chroot isolation), and a pause
# image for the cluster's pod sandboxes. Idempotent: the result is cached under
# $MC_CACHE/images (default ~/.cache/mail-continuity/images), keyed by a hash of
# every input (this script, Dockerfile, .dockerignore, package*.json,
# tsconfig*.json, src/**, the pause program, the machine's node and npm
# versions); a second run finds the archives and returns at once.
#
# Interface:
#   scripts/build-image.sh
#   stdout, one "NAME ARCHIVE" line per image:
#     localhost/mail-continuity-operator:dev  $MC_CACHE/images/mail-continuity-operator-<key>.tar
#     registry.k8s.io/pause:3.10              $MC_CACHE/images/pause-<key>.tar
#   $MC_CACHE/images/image.json: the same as {"key", "image", "archive", "pauseImage", "pauseArchive", "node"}
#   stderr: one "[image] HH:MM:SS ..." line per step.
# The archives are docker-archive tarballs that keep their names:
#   ctr --address SOCKET -n k8s.io images import ARCHIVE
# The pause image is named as the current upstream one; containerd 1.6's own
# default is pause:3.6, so the node's config must name it as sandbox_image.
#
# The Dockerfile's base images are replaced by stand-ins assembled from this
# machine's files (the production build pulls the real ones):
#   localhost/mail-continuity/node-build:<node>    node + npm under /usr/local, /bin/sh (dash),
#                                                  /usr/bin/env, their libraries, HOME=/root
#   localhost/mail-continuity/node-runtime:<node>  shaped like distroless nodejs: /nodejs/bin/node
#                                                  and its libraries, nonroot 65532, no shell
# npm reaches the registry in the build stages through the machine's CA bundle
# ($NODE_EXTRA_CA_CERTS, mounted read-only; a build argument only, never in the image).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${MC_CACHE:-$HOME/.cache/mail-continuity}
dir=$cache/images
image=localhost/mail-continuity-operator:dev
pause_image=registry.k8s.io/pause:3.10
step() { printf '[image] %s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

node_bin=$(readlink -f "$(command -v node)")
node_version=$("$node_bin" --version); node_version=${node_version#v}
npm_dir=$(dirname "$(readlink -f "$(command -v npm)")")/..; npm_dir=$(cd "$npm_dir" && pwd)
npm_version=$("$node_bin" -p "require('$npm_dir/package.json').version")
build_base=localhost/mail-continuity/node-build:$node_version
runtime_base=localhost/mail-continuity/node-runtime:$node_version

key=$(cd "$repo" && {
  printf '%s\n' scripts/build-image.sh Dockerfile .dockerignore package.json package-lock.json tsconfig*.json
  find src test/harness/cmd/pause -type f
} | LC_ALL=C sort | xargs -d '\n' sha256sum | { cat; echo "node $node_version npm $npm_version"; } | sha256sum | cut -c1-12)
archive=$dir/mail-continuity-operator-$key.tar
pause_archive=$dir/pause-$key.tar

# The result: "NAME ARCHIVE" lines on stdout, the same in image.json for other readers.
report() {
  cat > "$dir/image.json.tmp" <<EOF
{"key": "$key", "image": "$image", "archive": "$archive", "pauseImage": "$pause_image", "pauseArchive": "$pause_archive", "node": "$node_version"}
EOF
  mv "$dir/image.json.tmp" "$dir/image.json"
  printf '%s %s\n' "$image" "$archive" "$pause_image" "$pause_archive"
}

mkdir -p "$dir"
# One build at a time (the cluster harness and a test may ask at once).
exec 9>"$dir/.lock"
flock 9
if [ -s "$archive" ] && [ -s "$pause_archive" ]; then
  step "$image cached in $archive"
  report; exit 0
fi

# buildah's storage, state and temporary files (its cache mounts among them) stay in the cache.
export TMPDIR=$dir/tmp BUILDAH_ISOLATION=chroot
mkdir -p "$TMPDIR"
bh() { buildah --root "$dir/storage" --runroot "$dir/run" --storage-driver vfs "$@"; }
work=$(mktemp -d "$TMPDIR/work.XXXXXX")
# The storage is this script's alone (flock): no working container, finished or not, stays.
cleanup() {
  bh rm --all >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# copy ROOT FILE...: each file (symlinks resolved) and every shared library it
# loads, at the same path under ROOT's merged /usr (/lib -> usr/lib and so on).
copy_with_libs() {
  local root=$1 f p
  shift
  for f in "$@" $(ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*[^:]$/ {print $1}' | sort -u); do
    p=$root/usr${f#/usr}
    [ -e "$p" ] && continue
    mkdir -p "$(dirname "$p")"
    cp -L "$f" "$p"
  done
}

# skeleton ROOT: the merged-/usr layout of Debian 12, /tmp and /root.
skeleton() {
  local root=$1
  mkdir -p "$root"/usr/{bin,sbin,lib,lib64} "$root"/{etc,tmp,root}
  ln -s usr/bin "$root/bin"; ln -s usr/sbin "$root/sbin"; ln -s usr/lib "$root/lib"; ln -s usr/lib64 "$root/lib64"
  chmod 1777 "$root/tmp"; chmod 700 "$root/root"
}

# commit ROOT NAME CONFIG...: a one-layer image of ROOT, configured by `buildah config` flags.
commit() {
  local root=$1 name=$2 ctr mnt
  shift 2
  ctr=$(bh from --pull=never scratch)
  mnt=$(bh mount "$ctr")
  cp -a "$root/." "$mnt/"
  bh umount "$ctr" >/dev/null
  bh config "$@" "$ctr"
  bh commit --quiet --rm "$ctr" "$name" >/dev/null
}

standin_key=$(sed -n '/^copy_with_libs()/,/^# The Dockerfile itself/p' "$0" | { cat; echo "$node_version $npm_version"; } | sha256sum | cut -c1-12)
# A stand-in is current when it exists and was assembled by this version of the code above.
standin_current() {
  bh inspect --type image "$1" >/dev/null 2>&1 && [ "$(cat "$dir/standin-${1##*/}" 2>/dev/null)" = "$standin_key" ]
}

if standin_current "$build_base"; then
  step "build stand-in $build_base present"
else
  step "assembling $build_base: node $node_version, npm $npm_version, dash as /bin/sh, /usr/bin/env"
  root=$work/build
  skeleton "$root"
  copy_with_libs "$root" "$node_bin" /usr/bin/dash /usr/bin/env
  mkdir -p "$root/usr/local/bin" "$root/usr/local/lib/node_modules" "$root/etc/ssl/certs"
  mv "$root/usr${node_bin#/usr}" "$root/usr/local/bin/node"
  cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  ln -s dash "$root/usr/bin/sh"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  commit "$root" "$build_base" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env HOME=/root \
    --env NODE_VERSION="$node_version" --workingdir / --cmd '["node"]'
  echo "$standin_key" > "$dir/standin-${build_base##*/}"
fi

if standin_current "$runtime_base"; then
  step "runtime stand-in $runtime_base present"
else
  step "assembling $runtime_base: /nodejs/bin/node, its libraries, nonroot 65532, no shell"
  root=$work/runtime
  skeleton "$root"
  copy_with_libs "$root" "$node_bin"
  mkdir -p "$root/nodejs/bin" "$root/home/nonroot" "$root/etc/ssl/certs"
  mv "$root/usr${node_bin#/usr}" "$root/nodejs/bin/node"
  chown 65532:65532 "$root/home/nonroot"; chmod 700 "$root/home/nonroot"
  cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' > "$root/etc/group"
  printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
  # Debian's CA bundle as distroless ships it (Mozilla's roots only, none of this machine's own).
  cat /usr/share/ca-certificates/mozilla/*.crt > "$root/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || true
  commit "$root" "$runtime_base" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --user 65532 --workingdir /home/nonroot --entrypoint '["/nodejs/bin/node"]' --cmd '[]'
  echo "$standin_key" > "$dir/standin-${runtime_base##*/}"
fi

# The Dockerfile itself, unchanged, from the stand-ins.
step "buildah bud of the Dockerfile into $image (npm ci twice, tsc: minutes the first time)"
ca_args=()
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r "$NODE_EXTRA_CA_CERTS" ]; then
  ca_args=(-v "$(readlink -f "$NODE_EXTRA_CA_CERTS"):/etc/ssl/certs/ca-certificates.crt:ro"
    --build-arg NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt)
fi
start=$SECONDS
# No --layers: with the vfs driver every cached layer is a full copy of the tree (gigabytes);
# npm's cache mount keeps the second build's npm ci off the network instead.
if ! bh bud --pull=never --isolation chroot \
  --build-arg BUILD_IMAGE="$build_base" --build-arg RUNTIME_IMAGE="$runtime_base" \
  --build-arg REVISION="local-$key" "${ca_args[@]}" \
  -f "$repo/Dockerfile" -t "$image" "$repo" 2>&1 | tee "$dir/build.log" |
  { grep --line-buffered -E '^(\[[0-9]+/[0-9]+\] )?STEP ' || true; } | while read -r line; do step "  $line"; done; then
  tail -n 40 "$dir/build.log" >&2
  step "buildah bud failed (whole log: $dir/build.log)"
  exit 1
fi
step "built in $((SECONDS - start)) s"

step "compiling the pause program (static)"
mkdir -p "$work/pause"
(cd "$repo/test/harness/cmd/pause" && GOCACHE=$cache/go/cache GOTOOLCHAIN=local CGO_ENABLED=0 \
  go build -trimpath -ldflags='-s -w' -o "$work/pause/pause" .)
commit "$work/pause" "$pause_image" --user 65535:65535 --entrypoint '["/pause"]' --cmd '[]'

step "writing $archive and $pause_archive (docker-archive)"
rm -f "$archive.tmp" "$pause_archive.tmp"
bh push --quiet "$image" "docker-archive:$archive.tmp:$image"
bh push --quiet "$pause_image" "docker-archive:$pause_archive.tmp:$pause_image"
mv "$archive.tmp" "$archive"; mv "$pause_archive.tmp" "$pause_archive"
# Older archives, stand-ins of other node versions and images no tag names any more
# (the previous :dev) are of no use.
find "$dir" -maxdepth 1 -name '*.tar' ! -name "*-$key.tar" -delete
for old in $(bh images --format '{{.Name}}:{{.Tag}}' | grep '^localhost/mail-continuity/node-' | grep -v ":$node_version\$" || true); do
  bh rmi "$old" >/dev/null || true
done
bh rmi --prune >/dev/null 2>&1 || true
step "image $(du -h "$archive" | cut -f1) in $archive"
report
