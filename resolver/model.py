# The typed records the name table is fed with. Every state source (the Docker watcher, a
# snapshot file, tests) converts its own data into these at its boundary; nothing past this
# point sees a Docker dict. Frozen and slotted: a record is a value, never edited in place.
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# Docker's predefined networks: they never serve names (docs/views.md).
PREDEFINED_NETWORKS = frozenset({"bridge", "host", "none"})


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    """One engine network, reduced to what name serving needs."""

    id: str
    name: str
    subnets: tuple[IPNetwork, ...] = ()
    internal: bool = False
    ipv6: bool = False
    # False for Docker's predefined networks: their endpoints are known clients but no names.
    user_defined: bool = True

    @property
    def gateway_families(self) -> int:
        """How many address families give a container a gateway here (Docker's Endpoint.Less)."""
        if self.internal:
            return 0
        return 1 + (1 if self.ipv6 else 0)


@dataclass(frozen=True, slots=True)
class LinkAlias:
    """`--link target:alias` declared by a container on one network."""

    alias: str
    target: str


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """A container's attachment to one network."""

    network_id: str
    ipv4: IPv4Address | None = None
    ipv6: IPv6Address | None = None
    aliases: tuple[str, ...] = ()
    links: tuple[LinkAlias, ...] = ()

    @property
    def addresses(self) -> tuple[IPAddress, ...]:
        return tuple(a for a in (self.ipv4, self.ipv6) if a is not None)


@dataclass(frozen=True, slots=True)
class ServicePort:
    """A service a container offers to SRV queries (docs/srv.md): a port number it exposes
    (`service` is then that number as text) or a name declared by label; lower-case."""

    service: str
    proto: str  # "tcp" or "udp"
    port: int


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """A running container and its endpoints, in the order the engine reported them.

    `started_at` and `created_at` are sortable strings (RFC 3339 from the engine) used only to
    rebuild registration order deterministically after a restart (docs/order.md).
    """

    id: str
    name: str
    hostname: str | None = None
    endpoints: tuple[EndpointInfo, ...] = ()
    started_at: str = ""
    created_at: str = ""
    # The container set an `ndots` resolver option (--dns-opt ndots:N): Docker then answers
    # single-label A/AAAA misses with NOERROR/empty so the stub walks its search list.
    ndots_set: bool = False
    # Health (docs/health.md): False while its healthcheck says `starting` or `unhealthy`.
    ready: bool = True
    # What `_<service>._<proto>.<name>` finds for it (docs/srv.md), in declaration order.
    services: tuple[ServicePort, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def dns_names(self, endpoint: EndpointInfo) -> tuple[str, ...]:
        """Names this container registers on `endpoint`'s network, primary name first."""
        names = [self.name, *endpoint.aliases]
        if len(self.id) >= 12:
            names.append(self.short_id)
        if self.hostname:
            names.append(self.hostname)
        seen: set[str] = set()
        unique: list[str] = []
        for name in names:
            key = name.lower()
            if name and key not in seen:
                seen.add(key)
                unique.append(name)
        return tuple(unique)


@dataclass(frozen=True, slots=True)
class EngineState:
    """A complete picture of the engine: what a full sync or a snapshot file delivers."""

    networks: tuple[NetworkInfo, ...] = ()
    containers: tuple[ContainerInfo, ...] = field(default_factory=tuple)

    def registration_order(self) -> tuple[ContainerInfo, ...]:
        """Containers in the order their endpoints are taken to have joined after a restart:
        start time, then creation time, then ID (docs/order.md)."""
        return tuple(sorted(self.containers, key=lambda c: (c.started_at, c.created_at, c.id)))
