#!/bin/bash
# Writes a small seed corpus into fuzz/corpus/<target>/ (not committed):
# manifests for manifest_parse; tiny ACIs in every compression, plus a few
# hostile tars, for aci_read. Needs tar, gzip, bzip2, xz and zstd.
set -euo pipefail
cd "$(dirname "$0")"
M=corpus/manifest_parse A=corpus/aci_read
mkdir -p "$M" "$A"
cat > "$M/image.json" <<'J'
{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/app",
 "labels":[{"name":"version","value":"1.0.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}],
 "app":{"exec":["/bin/app","--x"],"user":"0","group":"0","workingDirectory":"/",
  "environment":[{"name":"PATH","value":"/bin"}],
  "eventHandlers":[{"name":"pre-start","exec":["/bin/true"]}],
  "mountPoints":[{"name":"data","path":"/data","readOnly":true}],
  "ports":[{"name":"http","protocol":"tcp","port":80,"count":1,"socketActivated":false}],
  "isolators":[{"name":"resource/memory","value":{"limit":"1G"}},{"name":"os/linux/capabilities-retain-set","value":{"set":["CAP_NET_BIND_SERVICE"]}}]},
 "dependencies":[{"imageName":"example.com/base","labels":[{"name":"os","value":"linux"}],"size":42}],
 "pathWhitelist":["/bin/app"],
 "annotations":[{"name":"created","value":"2020-01-01T00:00:00Z"}]}
J
cat > "$M/pod.json" <<'J'
{"acKind":"PodManifest","acVersion":"0.8.11",
 "apps":[{"name":"app","image":{"name":"example.com/app","id":"sha512-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
   "mounts":[{"volume":"data","path":"/data"}]}],
 "volumes":[{"name":"data","kind":"empty","mode":"0755","uid":0,"gid":0}],
 "ports":[{"name":"http","hostPort":8080}]}
J
printf '{"acKind":"ImageManifest","acVersion":"0.8.11","name":"a"}' > "$M/minimal.json"

T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
mkdir -p "$T/img/rootfs/bin" "$T/img/rootfs/etc"
cp "$M/minimal.json" "$T/img/manifest"
echo hello > "$T/img/rootfs/etc/hello"
ln -s ../etc/hello "$T/img/rootfs/bin/link"
ln "$T/img/rootfs/etc/hello" "$T/img/rootfs/etc/hard"
tar --numeric-owner -C "$T/img" -cf "$A/plain.aci" manifest rootfs
tar --format=pax --numeric-owner -C "$T/img" -cf "$T/pax.tar" manifest rootfs
gzip -n -c "$A/plain.aci" > "$A/gzip.aci"
bzip2 -c "$A/plain.aci" > "$A/bzip2.aci"
xz -c "$T/pax.tar" > "$A/xz.aci"
zstd -q -c "$A/plain.aci" > "$A/zstd.aci"
# Hostile: an absolute symlink (fine) and a file written through it (not).
mkdir -p "$T/h/rootfs/etc"
cp "$T/img/manifest" "$T/h/"
ln -s /etc "$T/h/rootfs/etc/link"
echo x > "$T/h/x"
tar --numeric-owner -C "$T/h" -cf "$A/hostile.aci" manifest rootfs \
    --transform 's|^x$|rootfs/etc/link/x|' x
echo "seeds: $(ls "$M" | wc -l) manifests, $(ls "$A" | wc -l) archives"
