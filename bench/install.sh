#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make test`'s tools, from Debian 12 (as root):
# dnsperf, dnsmasq, unbound, nsd, aardvark-dns and dig, and nft and ss (the takeover peer
# checks its namespaces with them). Idempotent: does nothing when all are
# there. The servers are only run by the suite on loopback ports, so their system services
# must not start (or stay enabled): dnsmasq comes as dnsmasq-base (the binary, no service),
# and unbound/nsd are installed with a temporary policy-rc.d and their units disabled.
# Without root it only says what is missing.
set -euo pipefail

need=()
command -v dnsperf >/dev/null 2>&1 || need+=(dnsperf)
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
command -v unbound >/dev/null 2>&1 || need+=(unbound)
command -v nsd >/dev/null 2>&1 || need+=(nsd)
[ -x /usr/lib/podman/aardvark-dns ] || need+=(aardvark-dns)
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v pidof >/dev/null 2>&1 || need+=(sysvinit-utils)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ss >/dev/null 2>&1 || need+=(iproute2)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "bench: missing Debian packages (install as root): ${need[*]}" >&2
  exit 1
fi
echo "bench: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
own_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  own_policy=1
fi
trap '[ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
if [ -d /run/systemd/system ]; then
  for unit in unbound nsd; do
    [[ " ${need[*]} " == *" $unit "* ]] && systemctl disable --now "$unit" >/dev/null 2>&1 || true
  done
fi
