# Config files of the peers, generated from the same snapshot names (bench.suite.names): a
# dnsmasq hosts file, unbound local-data (no recursion: everything else is refused or sent to
# the local fake), an NSD root zone, and an aardvark-dns config directory file. Pure text.
from __future__ import annotations

from collections.abc import Sequence

from bench.suite.names import Endpoint, host_records, pointer_records


def dnsmasq_hosts(found: Sequence[Endpoint]) -> str:
    """One line per address, its names after it: dnsmasq answers A, NODATA for AAAA, and PTR
    with the first name, so `name.network` comes first."""
    by_address: dict[str, list[str]] = {}
    for endpoint in found:
        names = by_address.setdefault(str(endpoint.address), [])
        names += [endpoint.qualified, endpoint.container, *endpoint.aliases]
    return "".join(f"{address} {' '.join(names)}\n" for address, names in by_address.items())


def unbound_conf(found: Sequence[Endpoint], port: int, upstream_port: int | None) -> str:
    head = [
        "server:",
        "  interface: 127.0.0.1", f"  port: {port}", "  do-daemonize: no",
        '  username: ""', '  chroot: ""', '  pidfile: ""', "  use-syslog: no",
        "  verbosity: 0", "  num-threads: 1", "  do-ip6: no", "  do-tcp: yes",
        "  access-control: 127.0.0.0/8 allow", "  do-not-query-localhost: no",
        '  module-config: "iterator"',
        # Nothing recurses to the internet: the root is answered locally (NXDOMAIN for misses).
        '  local-zone: "." static',
        f'  local-zone: "invalid." {"transparent" if upstream_port else "static"}',
    ]
    data = [f'  local-data: "{name}. 0 IN A {address}"'
            for name, address in host_records(found).items()]
    data += [f'  local-data: "{reverse}. 0 IN PTR {target}."'
             for reverse, target in pointer_records(found).items()]
    tail = ["forward-zone:", '  name: "invalid."', f"  forward-addr: 127.0.0.1@{upstream_port}"] \
        if upstream_port else []
    return "\n".join([*head, *data, *tail]) + "\n"


def nsd_zone(found: Sequence[Endpoint]) -> str:
    """The root zone holding every name: NSD as the fast-authoritative reference."""
    lines = [
        "$ORIGIN .", "$TTL 0",
        ". IN SOA ns.bench.invalid. hostmaster.bench.invalid. 1 3600 600 86400 0",
        ". IN NS ns.bench.invalid.",
    ]
    lines += [f"{name}. IN A {address}" for name, address in host_records(found).items()]
    lines += [f"{reverse}. IN PTR {target}." for reverse, target in pointer_records(found).items()]
    return "\n".join(lines) + "\n"


def nsd_conf(workdir: str, port: int) -> str:
    return "\n".join([
        "server:",
        "  ip-address: 127.0.0.1", f"  port: {port}", "  server-count: 1",
        '  username: ""', '  chroot: ""', f"  zonesdir: {workdir}",
        f"  pidfile: {workdir}/nsd.pid", f"  zonelistfile: {workdir}/zone.list",
        f"  xfrdfile: {workdir}/xfrd.state", f"  xfrdir: {workdir}", "  database: \"\"",
        "  verbosity: 0", "  hide-version: yes",
        # Debian builds NSD with response rate limiting (200 qps per /24 by default): off.
        "  rrl-ratelimit: 0", "  rrl-whitelist-ratelimit: 0",
        "remote-control:", "  control-enable: no",
        "zone:", '  name: "."', "  zonefile: root.zone",
    ]) + "\n"


def aardvark_network(found: Sequence[Endpoint], listen: str) -> str:
    """aardvark-dns 1.4's format (its config.md): the first line lists the listen addresses,
    then `ID IPv4s IPv6s names` per container. One network holds every endpoint: aardvark
    binds one socket per listen address and network, so one network is one loopback socket."""
    lines = [listen]
    by_container: dict[str, list[Endpoint]] = {}
    for endpoint in found:
        by_container.setdefault(endpoint.container, []).append(endpoint)
    for index, (name, held) in enumerate(by_container.items()):
        addresses = ",".join(dict.fromkeys(str(e.address) for e in held))
        names = [name, *(e.qualified for e in held), *(a for e in held for a in e.aliases)]
        lines.append(f"{index + 1:064x} {addresses}  {','.join(dict.fromkeys(names))}")
    return "\n".join(lines) + "\n"
