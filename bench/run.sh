#!/bin/bash
# Benchmark of starting a pod: `berth run` of a stored busybox image running
# /bin/true, start to exit (spawn -> reap, tear-down included), against the
# peers on the same rootfs, in one run of the shared harness:
#
#   host-crun:    berth run --net=host IMAGE  vs  crun run -b bundle-hostnet   (target: <= 1.5x)
#   none-crun:    berth run --net=none IMAGE  vs  crun run -b bundle           (target: <= 1.5x)
#   host-runc:    berth run --net=host IMAGE  vs  runc run -b bundle-hostnet
#   none-runc:    berth run --net=none IMAGE  vs  runc run -b bundle
#   host-podman:  berth run --net=host IMAGE  vs  podman run --rm --network=host IMAGE  (target: <= 0.2x)
#   none-podman:  berth run --net=none IMAGE  vs  podman run --rm --network=none IMAGE  (target: <= 0.2x)
#   none-host:    berth run --net=none        vs  berth run --net=host (cost of the netns)
#
# Fixtures are the shared ones (../shared/bench/setup.sh, run here; it
# installs crun, runc and podman from Debian when missing): the busybox-static
# rootfs; the OCI bundles `bundle` (own pid/net/ipc/uts/mount namespaces,
# cgroups) and `bundle-hostnet` (no network namespace) with root.path on that
# rootfs, args /bin/true; busybox.aci (manifest + the same rootfs, exec
# /bin/true), fetched once into a private berth store and run by image ID
# (--pull-policy=never); podman's localhost/bench-busybox:latest, imported
# from a tar of the same rootfs, in its own store under the fixtures.
# berth keeps each exited pod until `berth gc`: the pods of the previous run
# are removed before every berth run (untimed, --prepare-a), so every run
# starts from the same store.
#
# Peak memory: /usr/bin/time's max RSS of `berth run` (the largest single
# process of stage0 -> supervisor (same PID, exec'd in place) -> pod PID 1 ->
# app), and the supervisor's own VmHWM read from /proc while a pod runs
# `sleep` (target: supervisor < 10 MB).
#
# Usage: bench/run.sh   (as root)
#   BERTH (default target/release/berth, built if missing), RUNS (30),
#   RUNS_SLOW (15, pairs with podman), WARMUP (3), PAIRS (subset of the
#   names above), QUIET_IDLE / QUIET_MAX (../shared/bench/lib.sh)
#
# Figures (2026-11-30, 2 vCPUs shared with other builds; details, the busy
# machine's figures and where berth's time goes in bench/README.md): quiet
# machine, median berth/peer wall: crun 1.06 (--net=none), 1.27 (--net=host,
# 1.06 in an earlier run); runc 0.62 / 0.66; podman 0.13 (7.6-7.9x faster);
# berth's wall 21-25 ms, cpu 18-22 ms (crun: 10 ms). Supervisor VmHWM 4.7 MB,
# pod PID 1 2.5 MB, whole `berth run` max RSS 10.5 MB (stage0). On a busy
# machine berth/crun rises to 2.2-2.4 (waiting on fsync and the scheduler).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
[ -f "$SHARED/lib.sh" ] || { echo "shared bench library not found at $SHARED (set SHARED_BENCH)" >&2; exit 1; }
. "$SHARED/lib.sh"
need_root

RUNS="${RUNS:-30}"; RUNS_SLOW="${RUNS_SLOW:-15}"; WARMUP="${WARMUP:-3}"
OUT="$RESULTS_ROOT/run-$(date -u +%Y%m%dT%H%M%SZ)"
BERTH="${BERTH:-$ROOT/target/release/berth}"
mkdir -p "$OUT"

# 1. Peers and fixtures (installs the Debian packages of lib.sh if missing).
"$SHARED/setup.sh" --no-debian >&2
# crun refuses a hybrid cgroup layout that leaves a controller in the v2
# hierarchy. lib.sh's prep_host moves such controllers to v1, but tests the
# list with `-s`, and cgroupfs files report size 0: do it here.
if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = tmpfs ] &&
   [ -r /sys/fs/cgroup/unified/cgroup.controllers ]; then
    for c in $(cat /sys/fs/cgroup/unified/cgroup.controllers); do
        mountpoint -q "/sys/fs/cgroup/$c" && continue
        mkdir -p "/sys/fs/cgroup/$c"
        mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" ||
            log "warning: could not move cgroup controller $c to v1"
    done
fi
if [ ! -x "$BERTH" ]; then
    log "building berth (release)"
    (cd "$ROOT" && cargo build --release -p berth >&2)
fi

# 2. The berth store: the busybox ACI fetched once; pods live here too.
WORK="$(mktemp -d /var/tmp/berth-run-bench.XXXXXX)"
S="$WORK/store"
cleanup() {
    set +e
    # Pods of an interrupted run: end them, then remove the store.
    for p in "$S"/pods/*/*/pid; do
        [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null
    done
    "$BERTH" --dir "$S" gc --grace-period=0s >/dev/null 2>&1
    grep -F " $WORK/" /proc/self/mountinfo | cut -d' ' -f5 | sort -r |
        while read -r m; do umount -l "$m"; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ID=$("$BERTH" --dir "$S" --insecure-options=image fetch --full "$F/busybox.aci" 2>/dev/null | tail -1)
case "$ID" in sha512-*) ;; *) die "berth fetch of $F/busybox.aci printed no image ID: $ID" ;; esac
# Removes every pod of the store (exited: `berth rm`; a leftover pod dir
# that rm refuses, by hand) so that no run pays for the ones before it.
RESET_BERTH="sh -c '$BERTH --dir $S rm \$(ls $S/pods/run $S/pods/exited-garbage $S/pods/garbage 2>/dev/null) >/dev/null 2>&1; true'"

declare -A CMD
CMD[berth-host]="$BERTH --dir $S run --pull-policy=never --net=host $ID"
CMD[berth-none]="$BERTH --dir $S run --pull-policy=never --net=none $ID"
CMD[crun]="crun run -b $F/bundle bench-crun"
CMD[crun-hostnet]="crun run -b $F/bundle-hostnet bench-crun-hostnet"
CMD[runc]="runc run -b $F/bundle bench-runc"
CMD[runc-hostnet]="runc run -b $F/bundle-hostnet bench-runc-hostnet"
CMD[podman-none]="$PODMAN_RUN --network=none localhost/bench-busybox:latest /bin/true"
CMD[podman-host]="$PODMAN_RUN --network=host localhost/bench-busybox:latest /bin/true"

declare -A PAIR
PAIR[host-crun]="berth-host crun-hostnet"
PAIR[none-crun]="berth-none crun"
PAIR[host-runc]="berth-host runc-hostnet"
PAIR[none-runc]="berth-none runc"
PAIR[host-podman]="berth-host podman-host"
PAIR[none-podman]="berth-none podman-none"
PAIR[none-host]="berth-none berth-host"
PAIRS="${PAIRS:-host-crun none-crun host-runc none-runc host-podman none-podman none-host}"

# Every command must work before anything is timed.
for k in $(printf '%s\n' "${!CMD[@]}" | sort); do
    mapfile -d '' -t argv < <(split_words "${CMD[$k]}")
    "${argv[@]}" </dev/null >"$OUT/check-$k.log" 2>&1 || die "$k failed: ${CMD[$k]} (see $OUT/check-$k.log)"
done
eval "$RESET_BERTH"

{
    echo "# berth run vs crun / runc / podman, /bin/true in busybox, $(date -u +%FT%TZ)"
    echo "host: $(uname -r), $(nproc) cpus; berth $("$BERTH" version 2>/dev/null | head -1)"
    echo "fixtures: $F; berth store: $S"
    echo
    for k in $(printf '%s\n' "${!CMD[@]}" | sort); do echo "- $k: \`${CMD[$k]}\`"; done
    echo
    summary_header
} > "$OUT/summary.md"

for pair in $PAIRS; do
    [ -n "${PAIR[$pair]:-}" ] || die "unknown pair $pair"
    read -r a b <<<"${PAIR[$pair]}"
    n="$RUNS"; case "$b" in podman*) n="$RUNS_SLOW" ;; esac
    prep_b=""; case "$b" in berth*) prep_b="$RESET_BERTH" ;; esac
    idle=$(wait_quiet)
    log "$pair: $a vs $b, $n runs (cpu idle before: ${idle}%)"
    $PAIRTIME -n "$n" -w "$WARMUP" --name "$pair" -a "${CMD[$a]}" -b "${CMD[$b]}" \
        --prepare-a "$RESET_BERTH" --prepare-b "$prep_b" \
        --json "$OUT/$pair.json" --log "$OUT/$pair.log" | tee "$OUT/$pair.txt"
    summary_row "$OUT/$pair.json" >> "$OUT/summary.md"
done

# 3. Peak memory. Max RSS by GNU time (KiB, median of 5): the largest single
#    process among the command and the descendants it waited for.
{
    echo
    echo "max RSS by /usr/bin/time -f %M (KiB, median of 5):"
    for k in $(printf '%s\n' "${!CMD[@]}" | sort); do
        mapfile -d '' -t argv < <(split_words "${CMD[$k]}")
        m=$(for _ in 1 2 3 4 5; do
                case "$k" in berth*) eval "$RESET_BERTH" ;; esac
                /usr/bin/time -f '%M' "${argv[@]}" </dev/null 2>&1 >/dev/null | tail -1
            done | sort -n | sed -n 3p)
        echo "- $k: $m KiB"
    done
} >> "$OUT/summary.md"

# The supervisor alone: `berth run` execs it in place, so the PID started is
# the supervisor once its cmdline says `stage1`; its VmHWM (peak RSS since
# that exec) and PID 1's are read while the app sleeps, 5 times.
supervisor_peak() {
    local net="$1" pid t sup="" p1="" i c
    eval "$RESET_BERTH"
    "$BERTH" --dir "$S" run --pull-policy=never --net="$net" "$ID" --exec /bin/sleep -- 1 --- \
        </dev/null >/dev/null 2>&1 &
    pid=$!
    for t in $(seq 100); do
        grep -qa stage1 "/proc/$pid/cmdline" 2>/dev/null &&
            [ -n "$(cat "/proc/$pid/task/$pid/children" 2>/dev/null)" ] && break
        sleep 0.01
    done
    sleep 0.5
    sup=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status" 2>/dev/null)
    for c in $(cat "/proc/$pid/task/$pid/children" 2>/dev/null); do
        p1=$(awk '/^VmHWM/{print $2}' "/proc/$c/status" 2>/dev/null)
    done
    wait "$pid" || true
    echo "${sup:-?} ${p1:-?}"
}
{
    echo
    echo "supervisor VmHWM / pod PID 1 VmHWM while the app runs (KiB, median of 5):"
    for net in host none; do
        r=$(for _ in 1 2 3 4 5; do supervisor_peak "$net"; done)
        echo "- --net=$net: supervisor $(echo "$r" | cut -d' ' -f1 | sort -n | sed -n 3p) KiB," \
             "PID 1 $(echo "$r" | cut -d' ' -f2 | sort -n | sed -n 3p) KiB"
    done
    echo
    echo "targets: berth/crun wall <= 1.5; berth/podman wall <= 0.2 (>= 5x faster); supervisor < 10 MB"
} >> "$OUT/summary.md"

cat "$OUT/summary.md"
log "results in $OUT"
