#!/bin/sh
# Builds appc's App Container Executor validator and its two test images:
#
#   OUT/ace-validator               the validator (static Go binary), built
#                                   offline from Debian's golang-github-appc-spec-dev
#                                   (source in /usr/share/gocode) with golang-go
#   OUT/ace-validator-main.aci      exec "/ace-validator main", pre-start and
#                                   post-stop handlers, workingDirectory,
#                                   environment, mount point "database" at /db
#   OUT/ace-validator-sidekick.aci  exec "/ace-validator sidekick", same mount point
#
# The images are made by `actool build` (Debian's appc-spec) from the
# manifests beside this script. Prints the two ACI paths (main, then
# sidekick), one per line.
#
# Idempotent and cheap when nothing changed: the inputs (validator source,
# manifests, this script, go version) are hashed into OUT/.inputs, and a
# matching hash with both ACIs present skips the build. Concurrent callers
# (tests running in parallel) serialise on OUT/.lock.
#
# Usage: tests/ace/build.sh OUT_DIR
#   APPC_GOPATH  GOPATH holding github.com/appc/spec (default /usr/share/gocode)
set -eu

[ $# = 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
gopath=${APPC_GOPATH:-/usr/share/gocode}
src=$gopath/src/github.com/appc/spec

for t in go actool flock sha256sum; do
    command -v "$t" >/dev/null 2>&1 || {
        echo "$0: $t is missing (apt-get install golang-go appc-spec util-linux coreutils)" >&2
        exit 1
    }
done
[ -f "$src/ace/validator.go" ] || {
    echo "$0: no appc source in $src (apt-get install golang-github-appc-spec-dev)" >&2
    exit 1
}

main_aci=$out/ace-validator-main.aci
sidekick_aci=$out/ace-validator-sidekick.aci

exec 9>"$out/.lock"
flock 9

inputs=$(
    {
        go version
        cat "$0" "$here/image_manifest_main.json.in" "$here/image_manifest_sidekick.json.in"
        find "$src" -type f -name '*.go' ! -name '*_test.go' | LC_ALL=C sort | xargs sha256sum
    } | sha256sum | cut -d' ' -f1
)
if [ -f "$main_aci" ] && [ -f "$sidekick_aci" ] && [ -x "$out/ace-validator" ] &&
    [ "$(cat "$out/.inputs" 2>/dev/null)" = "$inputs" ]; then
    printf '%s\n%s\n' "$main_aci" "$sidekick_aci"
    exit 0
fi
rm -f "$out/.inputs"

work=$(mktemp -d "$out/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# 1. The validator: GOPATH mode (no modules, nothing downloaded), static.
arch=$(go env GOARCH)
GO111MODULE=off GOPATH=$gopath GOFLAGS= GOENV=off GOCACHE=$out/go-cache \
    CGO_ENABLED=0 GOOS=linux \
    go build -trimpath -ldflags='-s -w' -o "$work/ace-validator" github.com/appc/spec/ace >&2

# 2. The two images: manifest + rootfs/ (the validator at /, and the main
#    app's working directory; /db is left to the executor to create, as
#    ace.md says it should for a mount point missing from the image).
version=$(sed -n 's/.*"acVersion": *"\([^"]*\)".*/\1/p' "$here/image_manifest_main.json.in")
for app in main sidekick; do
    layout=$work/$app
    mkdir -p "$layout/rootfs"
    cp "$work/ace-validator" "$layout/rootfs/ace-validator"
    chmod 0755 "$layout/rootfs" "$layout/rootfs/ace-validator"
    [ "$app" = main ] && mkdir -m 0755 -p "$layout/rootfs/opt/acvalidator"
    sed -e "s/@ARCH@/$arch/" -e "s/@VERSION@/$version/" \
        "$here/image_manifest_$app.json.in" > "$layout/manifest"
    actool build --owner-root --overwrite "$layout" "$work/ace-validator-$app.aci" >&2
done

mv -f "$work/ace-validator" "$out/ace-validator"
mv -f "$work/ace-validator-main.aci" "$main_aci"
mv -f "$work/ace-validator-sidekick.aci" "$sidekick_aci"
echo "$inputs" > "$out/.inputs"
printf '%s\n%s\n' "$main_aci" "$sidekick_aci"
