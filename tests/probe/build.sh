#!/bin/sh
# Builds berth-probe as a static executable (glibc static-pie) so that it runs
# inside any test image, even one with no libc. Prints the binary's path.
#
# --target is explicit so that +crt-static reaches only the probe, not build
# scripts or proc-macros. getrandom's linux_getrandom backend avoids a dlsym
# that returns NULL in static-pie binaries.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
triple=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR="$root/target/static"
RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
    cargo build --quiet --release -p berth-probe --target "$triple" \
    --manifest-path "$root/Cargo.toml" >&2
echo "$CARGO_TARGET_DIR/$triple/release/berth-probe"
