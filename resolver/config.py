# The server's options: one frozen Config, built by the command line (resolver/cli.py) and read
# by the composition root (resolver/server.py). Options only: plain values of the standard
# library, no import from the rest of the package (types such as the alias order or an upstream
# belong to the modules that act on them and are made from these values there). Every default
# is a named constant with its reason. The behaviour behind each option: docs/.
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network

HostPort = tuple[str, int]

# An unprivileged port on loopback: `make run` must start without root or a free port 53.
DEFAULT_LISTEN: HostPort = ("127.0.0.1", 5353)
# Loopback only: the host itself may see every network, nobody else (docs/views.md).
DEFAULT_HOST_VIEW_FROM = ("127.0.0.0/8", "::1/128")
# 0: containers restart with new addresses and first-registered failover must be seen at once.
DEFAULT_TTL = 0
DEFAULT_ALIAS_ORDER = "first"
# Docker's own defaults are 4 s per try and no total budget; clients give up after ~5 s.
DEFAULT_UPSTREAM_TIMEOUT = 2.0
DEFAULT_UPSTREAM_BUDGET = 5.0
# Docker's maxConcurrent.
DEFAULT_MAX_FORWARDS = 1024
MAX_UPSTREAMS = 3  # Docker's maxExtDNS and resolv.conf's MAXNS
# A full reconcile with the engine this often (seconds), besides the one after every reconnect:
# events are reliable, so this only bounds the damage of one that was missed. 0: never.
DEFAULT_RESYNC_INTERVAL = 300.0
# TCP: Docker waits 2 s for the first query and 8 s between queries; we use one idle limit.
DEFAULT_TCP_IDLE = 8.0
DEFAULT_TCP_MAX_CONNECTIONS = 1024
DEFAULT_TCP_MAX_PER_SOURCE = 64
# Queries per second per source before REFUSED (docs/failures.md); 0: no limit, as Docker.
DEFAULT_RATE_LIMIT = 0.0
# Upstream answers kept (resolver/cache.py): at a few hundred bytes each, ~5 MB; 0: no cache.
DEFAULT_CACHE_SIZE = 10_000

# Who reads UDP: the event loop per datagram ("loop", the default: cheapest at low rates) or one
# thread in batches ("batch": recvmmsg/sendmmsg, cheaper under load; docs/performance.md).
UDP_IO = ("batch", "loop")
DEFAULT_UDP_IO = "loop"

IPNetworkOption = IPv4Network | IPv6Network


def _loopback_sources() -> tuple[IPNetworkOption, ...]:
    return tuple(ip_network(cidr) for cidr in DEFAULT_HOST_VIEW_FROM)


@dataclass(frozen=True, slots=True)
class Config:
    listen: tuple[HostPort, ...] = (DEFAULT_LISTEN,)
    # None: aiodocker's own choice (DOCKER_HOST, then the usual local sockets).
    docker: str | None = None
    # `--snapshot FILE`: serve this file instead of following an engine (docs/snapshot.md).
    snapshot: str | None = None
    resync_interval: float = DEFAULT_RESYNC_INTERVAL
    upstreams: tuple[HostPort, ...] = ()
    upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT
    upstream_budget: float = DEFAULT_UPSTREAM_BUDGET
    max_forwards: int = DEFAULT_MAX_FORWARDS
    ttl: int = DEFAULT_TTL
    alias_order: str = DEFAULT_ALIAS_ORDER
    domain: str | None = None  # lower-case, no trailing dot
    host_view_from: tuple[IPNetworkOption, ...] = field(default_factory=_loopback_sources)
    log_level: str = "info"
    tcp_idle: float = DEFAULT_TCP_IDLE
    tcp_max_connections: int = DEFAULT_TCP_MAX_CONNECTIONS
    tcp_max_per_source: int = DEFAULT_TCP_MAX_PER_SOURCE
    rate_limit: float = DEFAULT_RATE_LIMIT
    rate_limit_burst: float = 0.0  # 0: one second's worth (rate_limit)
    # `serve --attach all|labeled`: the sidecar joins networks itself (watchers/attach.py).
    attach: str | None = None
    # serve --takeover (docs/takeover.md); no_upstream: misses under takeover get NXDOMAIN
    # too, instead of going to Docker's resolver.
    takeover: bool = False
    no_upstream: bool = False
    takeover_only: str | None = None  # LABEL[=VALUE]: only containers carrying it
    cache_size: int = DEFAULT_CACHE_SIZE  # upstream answers kept; 0: none
    # --ignore-health: answer every holder whatever its healthcheck says (docs/health.md).
    ignore_health: bool = False
    # Operations (docs/operations.md): the --http listener (None: off), log format, query log.
    http: tuple[str, int] | None = None
    log_format: str = "text"
    log_queries: bool = False
    # --udp-io: who reads UDP, a thread in batches or the event loop per datagram.
    udp_io: str = DEFAULT_UDP_IO

    @property
    def engine_description(self) -> str:
        return self.docker or "the default engine (DOCKER_HOST or /var/run/docker.sock)"


def parse_host_port(text: str, default_port: int) -> HostPort:
    """`1.2.3.4`, `1.2.3.4:53`, `[::1]:53`, `::1` -> (host, port). Raises ValueError with a
    reason a user can act on."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else str(default_port)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, str(default_port)
    if not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    if not host:
        raise ValueError(f"{text!r}: no address before the port")
    return host, int(port_text)
