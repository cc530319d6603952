# The server's configuration: one frozen Config built by the CLI and passed to constructors.
# Nothing else reads the environment. Every default is a named constant with its reason.
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import ip_network

from resolver.model import IPNetwork
from resolver.views import DEFAULT_HOST_VIEW_FROM

# An unprivileged port on loopback: `make run` must start without root or a free port 53.
DEFAULT_LISTEN = ("127.0.0.1", 5353)
DEFAULT_DOCKER = "unix:///var/run/docker.sock"
# 0: containers restart with new addresses and first-registered failover must be seen at once.
DEFAULT_TTL = 0
# Docker's own defaults are 4 s per try and no total budget; clients give up after ~5 s.
DEFAULT_UPSTREAM_TIMEOUT = 2.0
DEFAULT_UPSTREAM_BUDGET = 5.0
# Docker's maxConcurrent.
DEFAULT_MAX_FORWARDS = 1024
MAX_UPSTREAMS = 3  # Docker's maxExtDNS and resolv.conf's MAXNS
# RFC 6891 §6.2.5 and DNS flag day 2020: a payload size that avoids IP fragmentation.
EDNS_PAYLOAD = 1232
# TCP: Docker waits 2 s for the first query and 8 s between queries; we use one idle limit.
# A full reconcile with the engine this often (seconds), besides the one after every reconnect:
# events are reliable, so this only bounds the damage of one that was missed. 0: never.
DEFAULT_RESYNC_INTERVAL = 300.0
DEFAULT_TCP_IDLE = 8.0
DEFAULT_TCP_MAX_CONNECTIONS = 1024
DEFAULT_TCP_MAX_PER_SOURCE = 64
# Queries per second per source before REFUSED (resolver/ratelimit.py); 0: no limit, as Docker.
DEFAULT_RATE_LIMIT = 0.0


class AliasOrder(StrEnum):
    """How several holders of one name are answered (SPEC §4)."""

    FIRST = "first"
    ORDERED = "ordered"
    SHUFFLE = "shuffle"


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    listen: tuple[tuple[str, int], ...] = (DEFAULT_LISTEN,)
    docker: str = DEFAULT_DOCKER
    resync_interval: float = DEFAULT_RESYNC_INTERVAL
    upstreams: tuple[Upstream, ...] = ()
    upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT
    upstream_budget: float = DEFAULT_UPSTREAM_BUDGET
    max_forwards: int = DEFAULT_MAX_FORWARDS
    ttl: int = DEFAULT_TTL
    alias_order: AliasOrder = AliasOrder.FIRST
    domain: str | None = None
    host_view_from: tuple[IPNetwork, ...] = field(
        default_factory=lambda: tuple(ip_network(c) for c in DEFAULT_HOST_VIEW_FROM)
    )
    log_level: str = "info"
    tcp_idle: float = DEFAULT_TCP_IDLE
    tcp_max_connections: int = DEFAULT_TCP_MAX_CONNECTIONS
    tcp_max_per_source: int = DEFAULT_TCP_MAX_PER_SOURCE
    rate_limit: float = DEFAULT_RATE_LIMIT
    rate_limit_burst: float = 0.0  # 0: one second's worth (rate_limit)


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """`1.2.3.4`, `1.2.3.4:53`, `[::1]:53`, `::1` -> (host, port). Raises ValueError."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default_port
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    else:
        host, port = text, default_port
    if not host or not 0 < port < 65536:
        raise ValueError(f"not an address with a port: {text!r}")
    return host, port


def resolv_conf_upstreams(text: str) -> tuple[Upstream, ...]:
    """Nameservers of a resolv.conf, minus loopback ones (they may be us: a loop)."""
    servers: list[Upstream] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            host = parts[1].split("%")[0]
            try:
                if ip_network(host).is_loopback:
                    continue
            except ValueError:
                continue
            servers.append(Upstream(host))
    return tuple(servers[:MAX_UPSTREAMS])
