#!/bin/bash
# Benchmark of getting an image into a store and onto disk, ~200 MB rootfs
# (the shared Debian fixture), gzip:
#
#   file:  berth fetch ./berth.aci && berth image render IMAGE      (cold store)
#     vs   skopeo copy oci:SRC oci:DST && umoci unpack DST BUNDLE   (target: <= 0.5x)
#          (render without DIR makes the tree in the store, what a pod
#          uses: the equivalent of umoci's bundle rootfs)
#   http:  berth fetch http://127.0.0.1:PORT/berth.aci && render     (loopback server)
#     vs   the same skopeo + umoci pair                              (target: <= 0.5x)
#   file-dir: berth fetch ./berth.aci && berth image render IMAGE DIR
#     vs   the same pair (extra row: the tree is also copied out to DIR)
#   render-vs-gzip: berth fetch ./berth.aci && berth image render IMAGE
#     vs   sh -c 'gzip -dc berth.aci | sha512sum'                    (target: <= 1.3x)
#          (the whole pipeline: download, hash, decompress and extract)
#   import: berth fetch ./berth.aci (hash + validate + store, and since the
#          single pass also extract + hash the tree: fetch renders)
#     vs   sh -c 'gzip -dc berth.aci | sha512sum'                    (target: <= 1.3x)
#
# The OCI side is the same rootfs as one gzip layer (umoci repack), copied
# between two local OCI layouts (skopeo verifies every digest) and unpacked.
# Every run starts from an empty store (removed untimed). Peak memory is
# pairtime.py's ru_maxrss of the largest process (target: berth < 64 MB).
#
# Results (2026-11-30, this 2-core VM, 90 MB gzip ACI of a ~200 MB rootfs,
# RUNS=5 WARMUP=1, medians of the per-pair ratios; berth fetch renders the
# tree on the import's pass, so `image render` after it only finds it):
#
#   DEFER_RM=1 (fetch-20261130T025330Z, machine idle >= 95%):
#     file-render      2.05 s vs 4.22 s   0.49   (target <= 0.5; was 0.54)
#     http-render      1.91 s vs 4.04 s   0.47   (target <= 0.5; was 0.67)
#     file-render-dir  1.92 s vs 4.01 s   0.48
#     render-vs-gzip   1.45 s vs 1.70 s   0.88   (target <= 1.3)
#     import           1.60 s vs 1.78 s   0.89   (target <= 1.3)
#     http-import      1.68 s vs 1.71 s   0.93
#     peak: berth 15-21 MiB (target < 64), skopeo/umoci 22-24 MiB
#   DEFER_RM=1 again on the merged tree (fetch-20261130T033648Z, idle >= 99%):
#     file-render      1.36 s vs 3.57 s   0.39
#     http-render                         0.43   (max 0.60)
#     render-vs-gzip                      0.75
#     import / http-import                0.84 / 0.95
#     peak: berth 16-22 MiB
#   default, same tree (fetch-20261130T034155Z, idle >= 97%): file-render
#     0.56, http-render 0.62, render-vs-gzip 2.30, import 2.08
#   default (rm -rf of the last run's ~27,000 inodes just before each run):
#     (fetch-20261130T024359Z, idle >= 97% except import; 030244Z, busier)
#     file-render      3.81 s vs 6.35 s   0.59 / 0.65   (was 0.76)
#     http-render      4.64 s vs 7.14 s   0.54 / 0.60   (was 0.75)
#     file-render-dir  4.35 s vs 6.39 s   0.73 / 0.67
#     render-vs-gzip   6.25 s vs 2.54 s   2.46 / 2.12
#     import           4.80 s vs 2.53 s   2.08 / 1.91
#     http-import      6.40 s vs 2.68 s   2.39 / 1.80
#     peak: berth 16-21 MiB
#   default, with the store's tmp/ marked FS_TOPDIR_FL (fetch-20261130T055601Z,
#   idle >= 97%; each process renders in a block group of its own, away from
#   the inodes the previous run's delete just freed):
#     file-render      1.35 s vs 6.14 s   0.24   (default mode was 0.56-0.65)
#     http-render      1.66 s vs 6.32 s   0.25   (was 0.54-0.62)
#     file-render-dir  3.29 s vs 5.17 s   0.64   (the copy into DIR is not spread)
#     render-vs-gzip   1.19 s vs 1.50 s   0.80   (was 2.12-2.46; target <= 1.3)
#     import           1.06 s vs 1.47 s   0.73   (was 1.91-2.08)
#     http-import      1.33 s vs 1.61 s   0.83   (was 1.80-2.39)
#     peak: berth 21-23 MiB
#
# Where the time goes (perf record -g of one fetch): SHA-512 is ~37% of all
# cycles (it runs twice over the ~230 MB tar stream: the image ID, and each
# file's content for the tree hash; no SHA-512 instructions on this CPU,
# OpenSSL does ~590 MB/s too), inflate ~11%, the rest file creation in the
# kernel. After a large delete ext4's recently_deleted() (inode allocation)
# takes ~15-20% more: the default rows pay it in the fetch, since the files
# are created there now.
#
# Usage: bench/fetch.sh   (as root; after bench/build.sh made the ACI, or it
#   is built here). BERTH (default target/release/berth), RUNS (5), WARMUP (1),
#   BENCH_WORKDIR (where per-run stores live, default /var/tmp), DEFER_RM
#   (1: move each run's outputs aside instead of removing them, see RESET).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
[ -f "$SHARED/lib.sh" ] || { echo "shared bench library not found at $SHARED (set SHARED_BENCH)" >&2; exit 1; }
. "$SHARED/lib.sh"
need_root

RUNS="${RUNS:-5}"
WARMUP="${WARMUP:-1}"
W="$F/aci-bench"
OUT="$RESULTS_ROOT/fetch-$(date -u +%Y%m%dT%H%M%SZ)"
BERTH="${BERTH:-$ROOT/target/release/berth}"
WORK="$(mktemp -d "${BENCH_WORKDIR:-/var/tmp}/berth-fetch-bench.XXXXXX")"
mkdir -p "$OUT"
command -v skopeo >/dev/null || die "skopeo missing (apt-get install skopeo)"
command -v umoci >/dev/null || die "umoci missing (apt-get install umoci)"
[ -x "$BERTH" ] || (cd "$ROOT" && cargo build --release -q -p berth)

SRVPID=""
cleanup() {
    if [ -n "$SRVPID" ] && kill -0 "$SRVPID" 2>/dev/null; then
        kill "$SRVPID"; wait "$SRVPID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. The ACI (bench/build.sh makes it from the shared fixture).
ACI="$W/berth.aci"
if [ ! -f "$ACI" ]; then
    log "no $ACI: running bench/build.sh first"
    RUNS=1 WARMUP=0 "$HERE/build.sh" >/dev/null
fi

# 2. The same rootfs as an OCI image layout with one gzip layer.
OCI_SRC="$W/oci-src"
if [ ! -e "$W/oci-src.done" ]; then
    log "making the OCI layout (umoci repack of the same rootfs)"
    rm -rf "$OCI_SRC" "$W/oci-bundle"
    umoci init --layout "$OCI_SRC"
    umoci new --image "$OCI_SRC:bench"
    umoci unpack --image "$OCI_SRC:bench" "$W/oci-bundle"
    rmdir "$W/oci-bundle/rootfs" 2>/dev/null || rm -rf "$W/oci-bundle/rootfs"
    cp -a "$W/layout-nodev/rootfs" "$W/oci-bundle/rootfs"
    umoci repack --image "$OCI_SRC:bench" "$W/oci-bundle"
    rm -rf "$W/oci-bundle"
    touch "$W/oci-src.done"
fi

# 3. A loopback HTTP server for the ACI.
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$PY -m http.server --bind 127.0.0.1 --directory "$W" "$PORT" >/dev/null 2>&1 &
SRVPID=$!
for _ in $(seq 50); do
    $PY -c "import socket; socket.create_connection(('127.0.0.1',$PORT)).close()" 2>/dev/null && break
    sleep 0.1
done
URL="http://127.0.0.1:$PORT/berth.aci"

S="$WORK/store"; R="$WORK/render"; D="$WORK/oci-dst"; B="$WORK/bundle"
RESET="rm -rf $S $R $D $B; sync"
if [ "${DEFER_RM:-0}" = 1 ]; then
    # ext4 without a journal (this VM's root) skips inodes freed in the last
    # minute when it allocates, looking each one up (recently_deleted in
    # fs/ext4/ialloc.c): an `rm -rf` of the last run's ~27,000 inodes just
    # before a run makes every file creation of the next one slower, on both
    # sides, by far more than the work measured. DEFER_RM=1 moves the last
    # run's outputs aside instead (removed at exit; needs ~0.6 GB per run).
    RESET="t=\$(mktemp -d $WORK/trash.XXXXXX); for p in $S $R $D $B; do if [ -e \$p ]; then mv \$p \$t/; fi; done; sync"
fi
FETCH_FILE="$BERTH --dir $S --insecure-options=image fetch --full $ACI"
FETCH_HTTP="$BERTH --dir $S --insecure-options=image,http fetch --full $URL"
RENDER="$BERTH --dir $S image render bench/debian"
RENDER_DIR="$BERTH --dir $S image render bench/debian $R"
OCI_PAIR="sh -c 'skopeo copy -q oci:$OCI_SRC:bench oci:$D:bench && umoci unpack --image $D:bench $B'"

log "ACI $(du -h "$ACI" | cut -f1), berth $BERTH, results in $OUT"
cat "$ACI" > /dev/null  # page cache warm for both sides
tar -C "$OCI_SRC" -cf - . > /dev/null

pair() {  # pair NAME A B
    local name="$1" a="$2" b="$3"
    log "$name: waiting for a quiet machine (idle $(wait_quiet)%)"
    $PAIRTIME -n "$RUNS" -w "$WARMUP" --name "$name" -a "$a" -b "$b" --prepare "$RESET" \
        --log "$OUT/$name.log" --json "$OUT/$name.json" | tee "$OUT/$name.txt"
}

pair file-render "sh -c '$FETCH_FILE && $RENDER'" "$OCI_PAIR"
pair http-render "sh -c '$FETCH_HTTP && $RENDER'" "$OCI_PAIR"
pair file-render-dir "sh -c '$FETCH_FILE && $RENDER_DIR'" "$OCI_PAIR"
pair render-vs-gzip "sh -c '$FETCH_FILE && $RENDER'" "sh -c 'gzip -dc $ACI | sha512sum'"
pair import "$FETCH_FILE" "sh -c 'gzip -dc $ACI | sha512sum'"
pair http-import "$FETCH_HTTP" "sh -c 'gzip -dc $ACI | sha512sum'"
log "done: $OUT"
