# Small builders for name-table topologies in tests and benchmarks: networks and containers by
# name, with addresses derived from the network's subnet, so a test reads like a `docker run`
# script.
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_network

from resolver.model import ContainerInfo, EndpointInfo, EngineState, LinkAlias, NetworkInfo
from resolver.table import NameTable
from resolver.views import HostViewPolicy


def network(name: str, subnet: str, *, internal: bool = False, ipv6: str | None = None,
            user_defined: bool = True) -> NetworkInfo:
    subnets = [ip_network(subnet)] + ([ip_network(ipv6)] if ipv6 else [])
    return NetworkInfo(f"id-{name}", name, tuple(subnets), internal, ipv6 is not None,
                       user_defined)


def attach(net: NetworkInfo, host: int, *aliases: str, links: dict[str, str] | None = None,
           v6: bool = True) -> EndpointInfo:
    v4 = next(s for s in net.subnets if s.version == 4)
    ipv4 = IPv4Address(int(v4.network_address) + host)
    ipv6 = None
    if net.ipv6 and v6:
        v6net = next(s for s in net.subnets if s.version == 6)
        ipv6 = IPv6Address(int(v6net.network_address) + host)
    link_aliases = tuple(LinkAlias(a, t) for a, t in (links or {}).items())
    return EndpointInfo(net.id, ipv4, ipv6, tuple(aliases), link_aliases)


def container(name: str, *endpoints: EndpointInfo, hostname: str | None = None,
              started: str = "") -> ContainerInfo:
    cid = (name.encode().hex() + "0" * 64)[:64]
    return ContainerInfo(cid, name, hostname, endpoints, started_at=started or name)


@dataclass
class Topology:
    networks: list[NetworkInfo] = field(default_factory=list)
    containers: list[ContainerInfo] = field(default_factory=list)

    def table(self, host_view: HostViewPolicy | None = None) -> NameTable:
        table = NameTable(host_view)
        table.replace_all(EngineState(tuple(self.networks), tuple(self.containers)))
        return table
