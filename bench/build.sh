#!/bin/bash
# Benchmark of ACI building and validation on a ~200 MB Debian rootfs:
#
#   build:    berth image build --overwrite LAYOUT OUT.aci
#        vs   actool build --overwrite LAYOUT OUT2.aci        (target: >= 2x faster)
#   validate: berth image validate OUT.aci
#        vs   sh -c 'gzip -dc OUT.aci | sha512sum'              (target: <= 1.2x)
#
# Each pair runs in one pairtime.py session, interleaved A B A B after warm-up
# runs, and the ratio printed is the median of the per-pair ratios.
#
# The fixture is the shared one (`debootstrap --variant=minbase bookworm` in
# $BENCH_FIXTURES/debian-rootfs, default /var/tmp/bench-fixtures), built here
# if missing with the same stamp shared/bench/setup.sh uses. The layout both
# tools build from is a copy of it WITHOUT /dev/*: actool opens every file it
# archives and hangs forever on /dev/console (berth archives device nodes from
# lstat alone; BENCH_WITH_DEV=1 times berth on the full tree too).
#
# Usage: bench/build.sh      (as root)
#   BERTH=path/to/berth   (default target/release/berth, built if missing;
#                          falls back to the library's `aci` example program)
#   RUNS (default 7), WARMUP (default 1), DEBIAN_MIRROR, BENCH_WITH_DEV=1
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
[ -f "$SHARED/lib.sh" ] || { echo "shared bench library not found at $SHARED (set SHARED_BENCH)" >&2; exit 1; }
. "$SHARED/lib.sh"
need_root

RUNS="${RUNS:-7}"
WARMUP="${WARMUP:-1}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
W="$F/aci-bench"
OUT="$RESULTS_ROOT/aci-build-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$F/.stamps" "$W" "$OUT"

command -v actool >/dev/null || die "actool missing (apt-get install appc-spec)"
command -v debootstrap >/dev/null || die "debootstrap missing (apt-get install debootstrap)"

# 1. The Debian rootfs fixture (shared with shared/bench/setup.sh).
if [ ! -e "$F/.stamps/debian-rootfs" ] || [ ! -d "$F/debian-rootfs" ]; then
    log "debootstrap --variant=minbase bookworm from $MIRROR (a few minutes)"
    rm -rf "$F/debian-rootfs.tmp"
    debootstrap --variant=minbase bookworm "$F/debian-rootfs.tmp" "$MIRROR" > "$F/debootstrap.log" 2>&1 ||
        die "debootstrap failed (see $F/debootstrap.log)"
    rm -rf "$F/debian-rootfs"; mv "$F/debian-rootfs.tmp" "$F/debian-rootfs"
    date -u +%FT%TZ > "$F/.stamps/debian-rootfs"
fi

# 2. The image layouts: manifest + rootfs/ (without /dev/* for actool). The
#    "done" stamp lives beside the layout: a layout holds nothing else.
layout_dir() {  # layout_dir NAME KEEP_DEV -> prints the layout path
    local d="$W/$1"
    if [ ! -e "$W/$1.done" ]; then
        rm -rf "$d"; mkdir -p "$d"
        cp -a "$F/debian-rootfs" "$d/rootfs"
        [ "$2" = 1 ] || rm -rf "$d/rootfs/dev/"*
        write_manifest "$d/manifest"
        touch "$W/$1.done"
    fi
    echo "$d"
}
write_manifest() {
    cat > "$1" <<'EOF'
{
  "acKind": "ImageManifest",
  "acVersion": "0.8.11",
  "name": "bench/debian",
  "labels": [
    {"name": "version", "value": "12"},
    {"name": "os", "value": "linux"},
    {"name": "arch", "value": "amd64"}
  ],
  "app": {"exec": ["/bin/bash"], "user": "0", "group": "0"}
}
EOF
}
LAYOUT=$(layout_dir layout-nodev 0)

# 3. The berth binary: the CLI if it builds, else the library's example.
if [ -z "${BERTH:-}" ]; then
    if [ -x "$ROOT/target/release/berth" ] || (cd "$ROOT" && cargo build --release -q -p berth 2>/dev/null); then
        BERTH="$ROOT/target/release/berth"
        BUILD_A="$BERTH image build --overwrite $LAYOUT $W/berth.aci"
        VALIDATE_A="$BERTH image validate $W/berth.aci"
    else
        log "the berth CLI does not build: using the aci example program"
        (cd "$ROOT" && cargo build --release -q -p berth-appc --example aci)
        BERTH="$ROOT/target/release/examples/aci"
        BUILD_A="$BERTH build $LAYOUT $W/berth.aci"
        VALIDATE_A="$BERTH validate $W/berth.aci"
    fi
else
    BUILD_A="$BERTH image build --overwrite $LAYOUT $W/berth.aci"
    VALIDATE_A="$BERTH image validate $W/berth.aci"
fi
BUILD_B="actool build --overwrite $LAYOUT $W/actool.aci"
VALIDATE_B="sh -c 'gzip -dc $W/berth.aci | sha512sum'"

log "layout: $LAYOUT ($(du -sh "$LAYOUT/rootfs" | cut -f1), $(find "$LAYOUT/rootfs" | wc -l) entries)"
log "berth: $BERTH; results in $OUT"

# Page cache warm for both: read the tree once.
tar -C "$LAYOUT" -cf - . > /dev/null

pair() {  # pair NAME A B
    local name="$1" a="$2" b="$3"
    log "$name: waiting for a quiet machine (idle $(wait_quiet)%)"
    $PAIRTIME -n "$RUNS" -w "$WARMUP" --name "$name" -a "$a" -b "$b" \
        --log "$OUT/$name.log" --json "$OUT/$name.json" | tee "$OUT/$name.txt"
}

pair build "$BUILD_A" "$BUILD_B"
# Validate what berth built (the gzip figure is then the same input for both).
pair validate "$VALIDATE_A" "$VALIDATE_B"

if [ "${BENCH_WITH_DEV:-0}" = 1 ]; then
    FULL=$(layout_dir layout-full 1)
    pair build-with-dev "${BUILD_A//$LAYOUT/$FULL}" "$BUILD_B"
fi

echo
echo "sizes: berth.aci $(stat -c %s "$W/berth.aci") bytes, actool.aci $(stat -c %s "$W/actool.aci") bytes"
echo "ids:   berth $(gzip -dc "$W/berth.aci" | sha512sum | cut -c1-16)..., tar sizes berth $(gzip -dc "$W/berth.aci" | wc -c) actool $(gzip -dc "$W/actool.aci" | wc -c)"
actool validate "$W/berth.aci" && echo "actool validate berth.aci: ok"
echo
summary_header
for n in build validate; do summary_row "$OUT/$n.json"; done
[ "${BENCH_WITH_DEV:-0}" = 1 ] && summary_row "$OUT/build-with-dev.json"
echo "targets: build A/B <= 0.50 (berth >= 2x faster than actool); validate A/B <= 1.20"
