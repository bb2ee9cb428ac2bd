# Sourced by scripts/demo and scripts/test: installs Debian packages that are
# missing, with one apt-get update at most. Needs root.
install_debs() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} = 0 ] && return 0
    echo "installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What the test suite runs for real: actool (appc's reference tool) judges
# berth's images and manifests; busybox-static fills test images; the
# compressors cross-check berth's archives; gnupg makes the keys and
# signatures that berth's OpenPGP verification is tested against; golang-go
# builds appc's ACE validator from golang-github-appc-spec-dev's source
# (tests/ace/build.sh), which then judges the pods berth runs; tmux and
# script (bsdutils) give `berth run --interactive` real terminals;
# docker-registry (distribution v2), skopeo and umoci serve, push and unpack
# the Docker/OCI images that berth's registry client and layer rendering are
# checked against; tar packs OCI archives.
TEST_DEBS="appc-spec busybox-static gzip xz-utils bzip2 zstd file gnupg golang-go golang-github-appc-spec-dev tmux bsdutils util-linux docker-registry skopeo umoci tar"
