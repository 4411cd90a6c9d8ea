#!/usr/bin/env bash
# mkimage.sh OUTDIR — build a small two-layer OCI image layout from Debian's
# busybox-static, with plain tools (tar, gzip, sha256sum), so the demo does
# not depend on the code it demonstrates.
#   layer 1: busybox and its applet links, /etc/motd, /etc/os-release
#   layer 2: motd changed, os-release deleted (whiteout), /www added
set -euo pipefail
out=${1:?usage: mkimage.sh OUTDIR}
busybox=$(command -v busybox || echo /bin/busybox)
[ -x "$busybox" ] || { echo "mkimage: busybox not found (apt-get install busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out/blobs/sha256"

l1=$work/l1
mkdir -p "$l1"/{bin,etc,tmp,root}
cp "$busybox" "$l1/bin/busybox"
for a in sh ls cat echo mkdir rm mv cp id uname sleep ps mount umount hostname; do
  ln -s busybox "$l1/bin/$a"
done
echo "Welcome to a unionstack demo image." > "$l1/etc/motd"
echo 'NAME="busybox demo"' > "$l1/etc/os-release"
chmod 1777 "$l1/tmp"

l2=$work/l2
mkdir -p "$l2"/{etc,www}
echo "Welcome to layer two." > "$l2/etc/motd"
: > "$l2/etc/.wh.os-release"
echo "<h1>hello from a union</h1>" > "$l2/www/index.html"

blob() { # blob FILE -> prints sha256 hex, moves file into blobs
  local h; h=$(sha256sum "$1" | cut -d' ' -f1)
  mv "$1" "$out/blobs/sha256/$h"; echo "$h"
}

diffids=() layers=()
for l in "$l1" "$l2"; do
  tar --sort=name --numeric-owner --owner=0 --group=0 --mtime='2024-01-01 00:00Z' \
      --format=pax --pax-option=delete=atime,delete=ctime -C "$l" -cf "$work/layer.tar" .
  diffids+=("sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)")
  gzip -n -9 "$work/layer.tar"
  size=$(stat -c %s "$work/layer.tar.gz")
  layers+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$(blob "$work/layer.tar.gz")\",\"size\":$size}")
done

ids=$(printf '"%s",' "${diffids[@]}"); ids=${ids%,}
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$ids" > "$work/config.json"
csize=$(stat -c %s "$work/config.json"); cdig=$(blob "$work/config.json")
ls=$(IFS=,; echo "${layers[*]}")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' "$cdig" "$csize" "$ls" > "$work/manifest.json"
msize=$(stat -c %s "$work/manifest.json"); mdig=$(blob "$work/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"busybox-demo:latest"}}]}' "$mdig" "$msize" > "$out/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
printf '%s\n' "${diffids[@]}" > "$out/diffids.txt"
echo "mkimage: wrote $out (${#diffids[@]} layers)"
