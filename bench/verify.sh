#!/bin/bash
# Cost of OpenPGP signature verification on `berth fetch`:
#
#   A: berth fetch https://127.0.0.1:PORT/app.aci            (signature checked)
#   B: berth --insecure-options=image fetch <same URL>        (not checked)
#
# of a ~200 MB signed ACI (the shared Debian minbase rootfs plus 110 MB of
# incompressible data, gzip) served by a loopback HTTPS server (Python's
# http.server behind ssl, a throwaway CA passed with SSL_CERT_FILE). A's key is trusted with `berth trust --root`. Both start
# from an empty store (--prepare removes it, untimed), so each run downloads,
# hashes, validates and stores the whole image; A also fetches the .asc and
# hashes the bytes for the signature on the same pass. Target: A/B <= 1.10.
#
# Usage: bench/verify.sh   (as root)
#   BERTH=path/to/berth (default target/release/berth, built if missing)
#   RUNS (default 7), WARMUP (default 1)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SHARED="${SHARED_BENCH:-$ROOT/../shared/bench}"
[ -f "$SHARED/lib.sh" ] || { echo "shared bench library not found at $SHARED (set SHARED_BENCH)" >&2; exit 1; }
. "$SHARED/lib.sh"
need_root

RUNS="${RUNS:-7}"
WARMUP="${WARMUP:-1}"
OUT="$RESULTS_ROOT/verify-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
command -v gpg >/dev/null || die "gpg missing (apt-get install gnupg)"
command -v openssl >/dev/null || die "openssl missing"

BERTH="${BERTH:-$ROOT/target/release/berth}"
if [ ! -x "$BERTH" ]; then
    log "building berth (release)"
    (cd "$ROOT" && cargo build --release -p berth >&2)
fi

W="$(mktemp -d /tmp/berth-bench-verify.XXXXXX)"
SERVER_PID=""
cleanup() {
    set +e  # every step runs, whatever the one before returned
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    gpgconf --homedir "$W/gnupg" --kill all 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT

# 1. The image: Debian minbase (no /dev) + 110 MB of random bytes.
ROOTFS="$F/debian-rootfs"
mkdir -p "$W/layout/rootfs" "$W/www"
if [ -d "$ROOTFS" ]; then
    tar -C "$ROOTFS" --exclude=./dev -cf - . | tar -C "$W/layout/rootfs" -xf -
else
    log "no $ROOTFS (run shared/bench/setup.sh); using /usr/share instead"
    cp -a /usr/share "$W/layout/rootfs/share"
fi
head -c 110M /dev/urandom > "$W/layout/rootfs/blob"
cat > "$W/layout/manifest" <<'M'
{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/bench",
 "labels":[{"name":"version","value":"1.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}
M
"$BERTH" image build --overwrite "$W/layout" "$W/www/app.aci" >/dev/null
rm -rf "$W/layout"
log "ACI: $(du -h "$W/www/app.aci" | cut -f1)"

# 2. Key and signature (gpg's defaults: ed25519, SHA-512).
mkdir -m 700 "$W/gnupg"
G=(gpg --homedir "$W/gnupg" --batch --yes --quiet --pinentry-mode loopback --passphrase '')
"${G[@]}" --quick-gen-key 'Bench <bench@example.com>' ed25519 sign never
"${G[@]}" --armor --export bench@example.com > "$W/key.asc"
"${G[@]}" --armor -u bench@example.com --detach-sign -o "$W/www/app.aci.asc" "$W/www/app.aci"
"$BERTH" --local-config "$W/etc" --system-config "$W/usr" \
    trust --root --skip-fingerprint-review "$W/key.asc" >/dev/null 2>&1

# 3. A loopback HTTPS server.
# (a CA and a leaf: rustls refuses a CA certificate as the server's own)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=berth-bench-ca \
    -keyout "$W/ca.key" -out "$W/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
    -keyout "$W/srv.key" -out "$W/srv.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$W/srv.ext"
openssl x509 -req -in "$W/srv.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial \
    -days 1 -extfile "$W/srv.ext" -out "$W/srv.pem" 2>/dev/null
PORT="$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
$PY - "$W/www" "$PORT" "$W/srv.pem" "$W/srv.key" <<'P' &
import functools, http.server, ssl, sys
root, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
h = functools.partial(Quiet, directory=root)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), h)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
P
SERVER_PID=$!
for _ in $(seq 50); do
    $PY -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$PORT" 2>/dev/null && break
    sleep 0.1
done

URL="https://127.0.0.1:$PORT/app.aci"
COMMON="$BERTH --dir $W/store --local-config $W/etc --system-config $W/usr"
export SSL_CERT_FILE="$W/ca.pem"
# Sanity: the verified fetch must succeed (and the unverified one warn).
$COMMON fetch "$URL" >/dev/null 2>"$OUT/check.txt" || { cat "$OUT/check.txt" >&2; die "verified fetch failed"; }
grep -q "signed by" "$OUT/check.txt" || die "no signer reported"
rm -rf "$W/store"

$PAIRTIME --name "fetch 200 MB ACI: verified vs --insecure-options=image" \
    -n "$RUNS" -w "$WARMUP" \
    --prepare "rm -rf $W/store" \
    -a "$COMMON fetch $URL" \
    -b "$COMMON --insecure-options=image fetch $URL" \
    --json "$OUT/verify.json" | tee "$OUT/summary.txt"
log "results in $OUT"
