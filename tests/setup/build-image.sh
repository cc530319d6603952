#!/usr/bin/env bash
# Builds the local test image scopedns-busybox:test from the host's static busybox: there is
# no image registry, so `docker import` of a tiny rootfs. Does nothing if the image exists.
set -euo pipefail
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
IMAGE=${IMAGE:-scopedns-busybox:test}
"$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1 && exit 0
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/etc" "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
tar -C "$root" -c . | "$DOCKER" import - "$IMAGE" >/dev/null
echo "built $IMAGE"
