#!/usr/bin/env bash
# make release: what a release publishes, in dist/release/ (docs/release.md):
#   mail-continuity-operator-VERSION.oci.tar   the image (OCI archive), named
#                                              ghcr.io/mail-continuity/mail-continuity-operator:VERSION
#   mail-continuity-operator-VERSION.tgz       the chart (helm package)
#   install.yaml                               deploy/install.yaml with the image pinned to its digest
#   crds/mailcontinuity.io_mailcontinuities.yaml
#   release.json                               {"version", "image", "digest"}
#   SHA256SUMS                                 sha256sum -c SHA256SUMS
# The version has one source, package.json's "version"; scripts/set-version.sh writes it into
# Chart.yaml, the Dockerfile, deploy/argocd and deploy/gitops, and this script refuses to run
# when one of them disagrees. The image comes from scripts/build-image.sh (the Dockerfile with
# buildah, cached by its inputs; on a machine without a registry, from local stand-ins of the
# base images), or from RELEASE_IMAGE_ARCHIVE, an OCI archive of one image built elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
out=${RELEASE_DIR:-$repo/dist/release}
cache=${MC_CACHE:-$HOME/.cache/mail-continuity}
bins=${MC_KUBEBIN_DIR:-$(cat "$cache/bin-dir" 2>/dev/null || true)}
helm=$bins/helm
step() { printf '[release] %s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'release: %s\n' "$*" >&2; exit 1; }

[ -x "$helm" ] || die "helm not found in '$bins': run 'make install' (test/harness/build.sh builds it)"
version=$(node -p 'require("./package.json").version')
scripts/set-version.sh --check "$version" || die "the version is not the same everywhere: run scripts/set-version.sh $version"
repository=ghcr.io/mail-continuity/mail-continuity-operator
name=mail-continuity-operator-$version

# Everything that should be committed is: a release of a dirty tree cannot be rebuilt.
if [ -n "${RELEASE_ALLOW_DIRTY:-}" ]; then
  step "RELEASE_ALLOW_DIRTY: a try-out of the working tree as it is (not checked for uncommitted or stale generated files)"
else
  [ -z "$(git status --porcelain -- src charts crds deploy Dockerfile package.json package-lock.json)" ] ||
    die "uncommitted changes under src/ charts/ crds/ deploy/ or in Dockerfile/package*.json: commit them (or RELEASE_ALLOW_DIRTY=1 for a try-out)"
  scripts/check-generated.sh >/dev/null || die "generated files are stale: run 'make generate' and commit"
fi

rm -rf "$out"; mkdir -p "$out/crds"

if [ -n "${RELEASE_IMAGE_ARCHIVE:-}" ]; then
  # An image built elsewhere from the real base images, e.g.
  #   docker buildx build --build-arg VERSION=$version --output type=oci,dest=image.oci.tar .
  step "image: $RELEASE_IMAGE_ARCHIVE (RELEASE_IMAGE_ARCHIVE)"
  cp "$RELEASE_IMAGE_ARCHIVE" "$out/$name.oci.tar"
  digest=$(tar -xOf "$out/$name.oci.tar" index.json | node -e '
    const i = JSON.parse(require("fs").readFileSync(0, "utf8"));
    if (i.manifests?.length !== 1) { console.error("the archive must hold one image, it holds " + (i.manifests?.length ?? 0)); process.exit(1); }
    console.log(i.manifests[0].digest);')
else
  step "image: scripts/build-image.sh"
  built=$(scripts/build-image.sh | awk 'NR==1{print $1}')
  dir=$cache/images
  bh() { buildah --root "$dir/storage" --runroot "$dir/run" --storage-driver vfs "$@"; }
  step "image: $built as $repository:$version into $name.oci.tar"
  (
    # The image storage belongs to build-image.sh: the same lock.
    flock 9
    bh tag "$built" "$repository:$version"
    bh push --quiet --format oci --digestfile "$out/.digest" \
      "$repository:$version" "oci-archive:$out/$name.oci.tar:$repository:$version"
    bh rmi "$repository:$version" >/dev/null
  ) 9>"$dir/.lock"
  digest=$(cat "$out/.digest"); rm -f "$out/.digest"
fi
[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || die "no image digest ('$digest')"

step "chart: helm package"
"$helm" package charts/mail-continuity-operator --version "$version" --app-version "$version" -d "$out" >/dev/null

step "install.yaml pinned to $digest"
{
  echo "# mail-continuity-operator $version: the operator, its CRD and RBAC in one manifest, the image"
  echo "# pinned to its digest. deploy/install.yaml of the release with $repository:$version"
  echo "# replaced by $repository@$digest (scripts/release.sh)."
  echo "#   kubectl apply --server-side -f install.yaml"
  grep -v '^#' deploy/install.yaml | sed "s#$repository:$version#$repository@$digest#g"
} > "$out/install.yaml"
grep -q "$repository@$digest" "$out/install.yaml" || die "deploy/install.yaml does not name $repository:$version"
! grep -v "^#" "$out/install.yaml" | grep -q "$repository:" || die "install.yaml still names an image by tag"

cp crds/*.yaml "$out/crds/"
printf '{"version": "%s", "image": "%s:%s", "digest": "%s"}\n' "$version" "$repository" "$version" "$digest" > "$out/release.json"
(cd "$out" && find . -type f ! -name SHA256SUMS | sed 's#^\./##' | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
step "dist/release: $(cd "$out" && ls | tr '\n' ' ')"
echo "$out"
