#!/usr/bin/env bash
# demo.sh UNIONCTL — the main job: build a busybox image, import it into the
# layer store, list it, show its layers, export it again with the same
# DiffIDs, mount its rootfs through each usable driver and show a copy-up,
# then walk through the classic aufs example with `unionctl mount`.
set -euo pipefail
unionctl=$(realpath "${1:?usage: demo.sh PATH/TO/unionctl}")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /var/tmp/unionstack-demo.XXXXXX)
mounts=()
cleanup() {
  for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
  "$unionctl" umount "$work/aufs/mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "build a two-layer image from Debian's busybox-static"
"$here/mkimage.sh" "$work/image"

step "drivers on this host"
run "$unionctl" --root "$work/store" driver ls

step "import, list, inspect (driver vfs)"
run "$unionctl" --root "$work/store" image import "$work/image"
run "$unionctl" --root "$work/store" image ls
run "$unionctl" --root "$work/store" image inspect busybox-demo:latest
run "$unionctl" --root "$work/store" layer ls

step "export again: the DiffIDs must be the ones we imported"
run "$unionctl" --root "$work/store" image export busybox-demo:latest "$work/export"
blob() { echo "$work/export/blobs/${1/://}"; }
manifest=$(blob "$(jq -r '.manifests[0].digest' "$work/export/index.json")")
i=0; ok=1
for l in $(jq -r '.layers[].digest' "$manifest"); do
  got="sha256:$(zcat -f "$(blob "$l")" | sha256sum | cut -d' ' -f1)"
  want=$(sed -n "$((i + 1))p" "$work/image/diffids.txt")
  if [ "$got" = "$want" ]; then echo "layer $i: same DiffID $got"; else echo "layer $i: DIFFERENT: $got, imported $want"; ok=0; fi
  i=$((i + 1))
done
[ "$ok" = 1 ] || { echo "demo: export changed a layer" >&2; exit 1; }

step "mount the image's rootfs read-only and look inside"
mkdir -p "$work/rootfs"
run "$unionctl" --root "$work/store" image mount busybox-demo:latest "$work/rootfs"
mounts+=("$work/rootfs")
run cat "$work/rootfs/etc/motd"
run ls "$work/rootfs/etc"
run "$unionctl" --root "$work/store" image umount "$work/rootfs"
mounts=()

for drv in vfs overlay fuse; do
  usable=$("$unionctl" --root "$work/store" driver ls --json | jq -r ".[] | select(.name == \"$drv\") | .usable")
  if [ "$usable" != true ]; then
    echo "driver $drv cannot run here: $("$unionctl" --root "$work/store" driver ls --json | jq -r ".[] | select(.name == \"$drv\") | .reason")"
    continue
  fi
  u=("$unionctl" --root "$work/store" --driver "$drv")
  step "driver $drv: a container's rootfs, and one file's copy-up"
  [ "$drv" = vfs ] || run "${u[@]}" image import "$work/image"
  run "${u[@]}" container create demo busybox-demo:latest
  mkdir -p "$work/rootfs-$drv"
  run "${u[@]}" container mount demo "$work/rootfs-$drv"
  mounts+=("$work/rootfs-$drv")
  echo "mounted as: $(grep -F " $work/rootfs-$drv " /proc/mounts | cut -d' ' -f1,3 | head -1)"
  run cat "$work/rootfs-$drv/etc/motd"
  printf '$ echo "written in the container" >> etc/motd\n'
  echo "written in the container" >> "$work/rootfs-$drv/etc/motd"
  run cat "$work/rootfs-$drv/etc/motd"
  run "${u[@]}" container umount "$work/rootfs-$drv"
  mounts=()
  echo "the container's layer (its diff) now holds the copied-up file:"
  "${u[@]}" layer diff demo | tar -tvf - | sed 's/^/  /'
  echo "and the image's layer is untouched:"
  run "${u[@]}" image mount busybox-demo:latest "$work/rootfs-$drv"
  mounts+=("$work/rootfs-$drv")
  run cat "$work/rootfs-$drv/etc/motd"
  run "${u[@]}" image umount "$work/rootfs-$drv"
  mounts=()
  run "${u[@]}" container rm demo
done

if [ "$("$unionctl" --root "$work/store" driver ls --json | jq -r '.[] | select(.name == "fuse") | .usable')" = true ]; then
  step "driver fuse through one mount server (unionctl serve) instead of a daemon per mount"
  u=("$unionctl" --root "$work/store" --driver fuse)
  "${u[@]}" container create served busybox-demo:latest >/dev/null
  mkdir -p "$work/rootfs-served"
  # mount+umount 5 times through the CLI; prints the mean in ms.
  time_mounts() {
    local t0 t1
    t0=$(date +%s%N)
    for _ in 1 2 3 4 5; do
      "${u[@]}" container mount served "$work/rootfs-served" >/dev/null
      "${u[@]}" container umount "$work/rootfs-served"
    done
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 5000000 ))
  }
  echo "container mount + umount, a daemon per mount: $(UNIONCTL_SERVE_SOCKET=$work/none.sock time_mounts) ms each"
  "$unionctl" serve --socket "$work/serve.sock" > "$work/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do [ -S "$work/serve.sock" ] && break; sleep 0.05; done
  export UNIONCTL_SERVE_SOCKET=$work/serve.sock
  run "${u[@]}" driver ls
  echo "container mount + umount, through the server:  $(time_mounts) ms each"
  run "${u[@]}" container mount served "$work/rootfs-served"
  mounts+=("$work/rootfs-served")
  run cat "$work/rootfs-served/etc/motd"
  run "${u[@]}" container umount "$work/rootfs-served"
  mounts=()
  kill -TERM "$server"; wait "$server" || true
  unset UNIONCTL_SERVE_SOCKET
  echo "server log:"; sed 's/^/  /' "$work/serve.log" | tail -4
  "${u[@]}" container rm served >/dev/null
fi

step "aufs, the classic walkthrough: unionctl mount dirs=./home:./company ./mnt"
mkdir -p "$work/aufs/home" "$work/aufs/company" "$work/aufs/mnt"
cd "$work/aufs"
touch company/code company/eat company/meeting home/sleep
run "$unionctl" mount dirs=./home:./company ./mnt
run ls mnt
printf '$ echo apple > mnt/code\n'; echo apple > mnt/code
run ls -l company/code home/code
run cat home/code
run "$unionctl" umount ./mnt
cd /
step "done"
