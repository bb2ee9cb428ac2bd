#!/bin/bash
# Benchmark of pulling a Docker/OCI image from a loopback registry and
# rendering it, cold, against podman and skopeo + umoci in the same run:
#
#   candidate:   berth fetch docker://REG/bench/debian:v2s2 && berth image render IMAGE
#                (render without DIR makes the tree in the store: what a pod
#                uses, the equivalent of umoci's bundle rootfs)
#     vs podman-pull    podman pull --tls-verify=false          (target: <= 0.5x)
#     vs skopeo+umoci   skopeo copy docker:// oci: && umoci unpack
#
# The image is the shared fixture oci-debian:bench (~200 MB, 3 gzip layers,
# ../shared/bench/setup.sh builds it), served by Debian's docker-registry;
# the timing, registry and fixture handling are ../shared/bench/pull.sh's,
# with berth as its CANDIDATE. Every run starts from an empty store.
#
# Then the layer-sharing check: a second image with the same first two
# layers and a different third is pushed; after berth pulled the first, the
# pull of the second must GET exactly two blobs from the registry (its own
# layer and its config), as the registry's access log shows.
#
# Usage: bench/pull.sh   (as root). BERTH (default target/release/berth,
#   built if missing), RUNS (5), WARMUP (1), PULL_WORKDIR; see pull.sh.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
[ -f "$SHARED/lib.sh" ] || { echo "shared bench library not found at $SHARED (set SHARED_BENCH)" >&2; exit 1; }
. "$SHARED/lib.sh"
need_root

BERTH="${BERTH:-$ROOT/target/release/berth}"
[ -x "$BERTH" ] || (cd "$ROOT" && cargo build --release -q -p berth)
"$SHARED/setup.sh" >/dev/null

# 1. Timings (the shared script starts and stops its own registry).
REF='$REGISTRY/bench/debian:v2s2'
export CANDIDATE="$BERTH --dir=\$BENCH_DIR --insecure-options=http fetch docker://$REF >/dev/null && $BERTH --dir=\$BENCH_DIR image render docker://$REF >/dev/null"
PAIRS="${PAIRS:-candidate-vs-podman-pull candidate-vs-skopeo+umoci}" "$SHARED/pull.sh"

# 2. Layer sharing.
WORK="$(mktemp -d "${PULL_WORKDIR:-/var/tmp}/berth-pull-share.XXXXXX")"
REGPID=""
cleanup() {
    if [ -n "$REGPID" ] && kill -0 "$REGPID" 2>/dev/null; then
        kill "$REGPID"; wait "$REGPID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG="127.0.0.1:$PORT"
mkdir -p "$WORK/storage"
cat > "$WORK/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $WORK/storage
http:
  addr: $REG
EOF
docker-registry serve "$WORK/config.yml" > "$WORK/registry.log" 2>&1 &
REGPID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://$REG/v2/" && break; sleep 0.1; done

# The second image: the fixture with its third layer replaced by a small one.
cp -a "$F/oci-debian" "$WORK/layout"
L="$WORK/layout"
m=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]=="bench") | .digest' "$L/index.json")
M="$L/blobs/sha256/${m#sha256:}"
C="$L/blobs/sha256/$(jq -r '.config.digest' "$M" | cut -d: -f2)"
mkdir -p "$WORK/l3/srv"; echo "the second image" > "$WORK/l3/srv/second"
tar -C "$WORK/l3" -cf "$WORK/l3.tar" srv
DIFF="sha256:$(sha256sum < "$WORK/l3.tar" | cut -d' ' -f1)"
gzip -n < "$WORK/l3.tar" > "$WORK/l3.tar.gz"
LD="$(sha256sum < "$WORK/l3.tar.gz" | cut -d' ' -f1)"; cp "$WORK/l3.tar.gz" "$L/blobs/sha256/$LD"
jq -c --arg d "$DIFF" '.rootfs.diff_ids[2] = $d' "$C" > "$WORK/config.json"
CD="$(sha256sum < "$WORK/config.json" | cut -d' ' -f1)"; cp "$WORK/config.json" "$L/blobs/sha256/$CD"
jq -c --arg ld "sha256:$LD" --argjson ls "$(stat -c %s "$WORK/l3.tar.gz")" \
      --arg cd "sha256:$CD" --argjson cs "$(stat -c %s "$WORK/config.json")" \
      '.layers[2].digest = $ld | .layers[2].size = $ls | .config.digest = $cd | .config.size = $cs' "$M" > "$WORK/manifest.json"
MD="$(sha256sum < "$WORK/manifest.json" | cut -d' ' -f1)"; cp "$WORK/manifest.json" "$L/blobs/sha256/$MD"
jq -c --arg md "sha256:$MD" --argjson ms "$(stat -c %s "$WORK/manifest.json")" \
      '.manifests += [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": $md, "size": $ms,
                       "annotations": {"org.opencontainers.image.ref.name": "second"}}]' "$L/index.json" > "$WORK/index.json"
cp "$WORK/index.json" "$L/index.json"
skopeo copy -q --dest-tls-verify=false "oci:$L:bench" "docker://$REG/bench/debian:first"
skopeo copy -q --dest-tls-verify=false "oci:$L:second" "docker://$REG/bench/debian:second"

blob_gets() { grep -c '"GET /v2/bench/debian/blobs/sha256:' "$WORK/registry.log" || true; }
S="$WORK/store"
n0=$(blob_gets)
t0=$(date +%s.%N)
"$BERTH" --dir="$S" --insecure-options=http fetch "docker://$REG/bench/debian:first" >/dev/null
t1=$(date +%s.%N)
n1=$(blob_gets)
"$BERTH" --dir="$S" --insecure-options=http fetch "docker://$REG/bench/debian:second" >/dev/null
t2=$(date +%s.%N)
n2=$(blob_gets)
"$BERTH" --dir="$S" image render "docker://$REG/bench/debian:second" >/dev/null
t3=$(date +%s.%N)
first=$((n1 - n0)); second=$((n2 - n1))
$PY -c "print(f'layer sharing: first image {$first} blob GETs in {$t1-$t0:.2f} s; second image (all but one layer shared) {$second} blob GETs in {$t2-$t1:.2f} s, render {$t3-$t2:.2f} s')"
[ "$second" = 2 ] || die "the second pull fetched $second blobs, expected 2 (its own layer and its config)"
log "second image pulled only its own layer and config"
