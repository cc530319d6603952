#!/usr/bin/env bash
# Installs what `make test` needs from Debian on a fresh machine (as root): the venv module,
# the Docker engine, static busybox for the test image, dig and nsenter, debootstrap,
# docker-compose and nftables (takeover). Idempotent: does nothing when everything is already
# there. Without root it only says what is missing.
set -euo pipefail

need=()
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv python3-pip)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
# The test image needs a static busybox (ldd says "not a dynamic executable"; it exits 1).
ldd_out=$(ldd /bin/busybox 2>&1 || true)
[[ -x /bin/busybox && $ldd_out == *"not a dynamic"* ]] || need+=(busybox-static)
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
# `make image` builds its base with debootstrap when no registry answers (image/build-base.sh);
# the compose example is tested with Debian's Compose 1.29 (tests/integration/test_deploy.py).
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
# serve --takeover: libnftables1 (loaded through ctypes) and nft for the tests and operators.
command -v nft >/dev/null 2>&1 || need+=(nftables)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages (install as root): ${need[*]}" >&2
  exit 0
fi
echo "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
