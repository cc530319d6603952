#!/usr/bin/env bash
# Builds the local image base scopedns-base:bookworm when the public base cannot be pulled (no
# image registry: air-gapped machines, CI): a Debian 12 minbase rootfs with python3 and venv
# from the apt mirror (debootstrap), slimmed and `docker import`ed. Built once, then reused.
# Needs root and debootstrap (tests/setup/install-system.sh installs it).
set -euo pipefail
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
LOCAL_BASE=${LOCAL_BASE:-scopedns-base:bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
"$DOCKER" image inspect "$LOCAL_BASE" >/dev/null 2>&1 && exit 0
command -v debootstrap >/dev/null || { echo "build-base: debootstrap is missing" >&2; exit 1; }
root=$(mktemp -d /var/tmp/scopedns-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "building $LOCAL_BASE with debootstrap from $MIRROR (once; a few minutes)"
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" "$MIRROR" \
  >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# What a container never needs: apt's caches and lists, docs, man pages, locales.
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
tar --numeric-owner -C "$root" -c . | "$DOCKER" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' - "$LOCAL_BASE" >/dev/null
echo "built $LOCAL_BASE"
