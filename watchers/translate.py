# Docker JSON -> our typed records (resolver.model), and Docker events -> what the watcher must do.
# Pure functions: no I/O, no aiodocker import, nothing mutable kept. This is the boundary where
# foreign dicts stop (docs/design.md, rule 8): nothing past it sees one. Input is untrusted, so
# nothing here raises on a bad or missing field: what cannot be parsed is skipped and logged at
# debug level.
from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import Any, TypeVar

from resolver.model import (
    PREDEFINED_NETWORKS,
    ContainerInfo,
    EndpointInfo,
    IPNetwork,
    LinkAlias,
    NetworkInfo,
)
from watchers.discovery import is_health_event, ready_from_inspect, services_from_inspect

_Address = TypeVar("_Address", IPv4Address, IPv6Address)
log = logging.getLogger(__name__)

# Container actions after which its running state, name or endpoints may differ: re-inspect.
# `kill` may be a mere signal, so it is re-inspected too, and so is `health_status: ...`
# (readiness, docs/health.md). `pause`/`unpause` keep the endpoints (a paused container keeps
# its names, as in Docker) and `create` is not running yet: ignored.
CONTAINER_REFRESH_ACTIONS = frozenset({"start", "restart", "kill", "rename"})
# Actions that mean the container's endpoints left, whatever an inspect says by the time we read
# it (a restart may already be under way): the names leave now and rejoin at the end of their
# registration order when the following `start` is applied (docs/order.md).
CONTAINER_GONE_ACTIONS = frozenset({"die", "stop", "destroy"})

_NANO = 1_000_000_000
_RFC3339 = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$", re.IGNORECASE
)


# ----- inspect JSON -> records ---------------------------------------------------------------


def network_from_inspect(data: Any) -> NetworkInfo | None:
    """A network from `GET /networks` or `GET /networks/{id}`; None without an Id and a Name."""
    if not isinstance(data, Mapping):
        log.debug("network: not an object: %r", data)
        return None
    network_id, name = sys.intern(_str(data, "Id")), _str(data, "Name")
    if not network_id or not name:
        log.debug("network: no Id or Name, skipped: %r", data)
        return None
    ipam = _map(data, "IPAM")
    configs = ipam.get("Config")
    return NetworkInfo(
        id=network_id,
        name=name,
        subnets=tuple(_subnets(name, configs if isinstance(configs, list) else [])),
        internal=data.get("Internal") is True,
        ipv6=data.get("EnableIPv6") is True,
        user_defined=name not in PREDEFINED_NETWORKS,
    )


def container_from_inspect(data: Any) -> ContainerInfo | None:
    """A running container from `GET /containers/{id}/json`; None when it is not running (or
    has no usable Id or Name). Endpoints keep the order of NetworkSettings.Networks.

    A restarting container counts as not running: the engine reports Running=true while it waits
    to restart, but it released its endpoints at `die` and gets them back only at `start`."""
    if not isinstance(data, Mapping):
        log.debug("container: not an object: %r", data)
        return None
    state = _map(data, "State")
    if state.get("Running") is not True or state.get("Restarting") is True:
        return None
    container_id = _str(data, "Id")
    name = _str(data, "Name").lstrip("/")
    if not container_id or not name:
        log.debug("container: no Id or Name, skipped: %r", data)
        return None
    networks = _map(_map(data, "NetworkSettings"), "Networks")
    endpoints = (_endpoint(name, net, ep) for net, ep in networks.items())
    return ContainerInfo(
        id=container_id,
        name=name,
        hostname=_hostname(data, container_id),
        endpoints=tuple(ep for ep in endpoints if ep is not None),
        started_at=_str(state, "StartedAt"),
        created_at=_str(data, "Created"),
        ndots_set=_sets_ndots(_map(data, "HostConfig").get("DnsOptions")),
        ready=ready_from_inspect(data),
        services=services_from_inspect(data, name),
    )


def _sets_ndots(options: Any) -> bool:
    """`--dns-opt ndots:N` given for the container (HostConfig.DnsOptions)."""
    if not isinstance(options, list):
        return False
    return any(isinstance(o, str) and o.strip().startswith("ndots:") for o in options)


def _subnets(network: str, configs: Iterable[Any]) -> Iterable[IPNetwork]:
    for config in configs:
        subnet = config.get("Subnet") if isinstance(config, Mapping) else None
        if not isinstance(subnet, str) or not subnet:
            continue
        try:
            yield ip_network(subnet, strict=False)
        except ValueError:
            log.debug("network %s: bad subnet %r skipped", network, subnet)


def _hostname(data: Mapping[str, Any], container_id: str) -> str | None:
    """Config.Hostname, unless it is the engine's default (the short ID), which is a name anyway."""
    hostname = _str(_map(data, "Config"), "Hostname")
    if not hostname or hostname == container_id[:12]:
        return None
    return hostname


def _endpoint(container: str, network: str, data: Any) -> EndpointInfo | None:
    if not isinstance(data, Mapping) or not _str(data, "NetworkID"):
        log.debug("container %s: endpoint on %s has no NetworkID, skipped", container, network)
        return None
    return EndpointInfo(
        # One string per network, not one per endpoint (docs/performance.md).
        network_id=sys.intern(_str(data, "NetworkID")),
        ipv4=_address(container, data.get("IPAddress"), IPv4Address),
        ipv6=_address(container, data.get("GlobalIPv6Address"), IPv6Address),
        aliases=_aliases(data.get("Aliases"), data.get("DNSNames")),
        links=tuple(_links(container, data.get("Links"))),
    )


def _address(container: str, text: Any, family: type[_Address]) -> _Address | None:
    """`family(text)` for a non-empty string, else None; a bad one is logged and skipped."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return family(text)
    except ValueError:
        log.debug("container %s: bad %s %r skipped", container, family.__name__, text)
        return None


def _aliases(*lists: Any) -> tuple[str, ...]:
    """Aliases then DNSNames (engines >= 25 report every DNS name there), first spelling kept."""
    seen: set[str] = set()
    names: list[str] = []
    for values in lists:
        for value in values if isinstance(values, list) else ():
            if isinstance(value, str) and value and value.lower() not in seen:
                seen.add(value.lower())
                names.append(value)
    return tuple(names)


def _links(container: str, values: Any) -> Iterable[LinkAlias]:
    """Endpoint Links: "target:alias", or "target" alone (alias == target). The legacy
    "/target:/container/alias" spelling is accepted too."""
    for value in values if isinstance(values, list) else ():
        if not isinstance(value, str):
            continue
        target, _, alias = value.partition(":")
        target = target.strip("/")
        alias = alias.rsplit("/", 1)[-1] if alias else target
        if not target or not alias:
            log.debug("container %s: bad link %r skipped", container, value)
            continue
        yield LinkAlias(alias=alias, target=target)


def _map(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


# ----- events -> actions ---------------------------------------------------------------------


class EventKind(Enum):
    REFRESH_CONTAINER = "refresh-container"  # re-inspect container_id
    REMOVE_CONTAINER = "remove-container"  # container_id stopped running
    LEAVE_NETWORK = "leave-network"  # container_id left network_id: re-inspect, minus that one
    REFRESH_NETWORK = "refresh-network"  # re-inspect network_id
    REMOVE_NETWORK = "remove-network"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class EventAction:
    """What one engine event asks of the watcher. `time_nano` is the event's time, if known."""

    kind: EventKind
    container_id: str = ""
    network_id: str = ""
    time_nano: int | None = None


def classify_event(event: Any) -> EventAction:
    """Map a `/events` message (Type, Action, Actor.ID, Actor.Attributes, time/timeNano) to an
    action. Events carry no addresses, so whatever joins is re-read by an inspect."""
    if not isinstance(event, Mapping):
        return EventAction(EventKind.IGNORE)
    when = event_time_nano(event)
    kind, action = _str(event, "Type"), _str(event, "Action")
    actor = _map(event, "Actor")
    actor_id = _str(actor, "ID")
    if kind == "container" and actor_id:
        if action in CONTAINER_REFRESH_ACTIONS or is_health_event(action):
            return EventAction(EventKind.REFRESH_CONTAINER, actor_id, time_nano=when)
        if action in CONTAINER_GONE_ACTIONS:
            return EventAction(EventKind.REMOVE_CONTAINER, actor_id, time_nano=when)
    elif kind == "network" and actor_id:
        container_id = _str(_map(actor, "Attributes"), "container")
        if action == "create":
            return EventAction(EventKind.REFRESH_NETWORK, network_id=actor_id, time_nano=when)
        if action == "destroy":
            return EventAction(EventKind.REMOVE_NETWORK, network_id=actor_id, time_nano=when)
        if action == "connect" and container_id:
            return EventAction(EventKind.REFRESH_CONTAINER, container_id, actor_id, when)
        if action == "disconnect" and container_id:
            return EventAction(EventKind.LEAVE_NETWORK, container_id, actor_id, when)
    return EventAction(EventKind.IGNORE, time_nano=when)


# What a stale event may still do: it cannot remove on its own word, only make us ask the engine.
_STALE_KIND = {
    EventKind.REMOVE_CONTAINER: EventKind.REFRESH_CONTAINER,
    EventKind.LEAVE_NETWORK: EventKind.REFRESH_CONTAINER,
    EventKind.REMOVE_NETWORK: EventKind.REFRESH_NETWORK,
}


def effective_kind(action: EventAction, fresh_from: int) -> EventKind:
    """What to do for `action` when every event stamped before `fresh_from` (the newest event
    applied, or the last full listing) is stale: replayed, duplicated or out of order. A stale
    removal becomes a re-inspection, so only what the engine says now counts."""
    if action.time_nano is not None and action.time_nano < fresh_from:
        return _STALE_KIND.get(action.kind, action.kind)
    return action.kind


def event_time_nano(event: Mapping[str, Any]) -> int | None:
    """timeNano, else `time` in seconds (an int in the engine's JSON, a datetime once aiodocker
    has converted it)."""
    nano = event.get("timeNano")
    if isinstance(nano, int) and not isinstance(nano, bool) and nano > 0:
        return nano
    seconds = event.get("time")
    if isinstance(seconds, datetime):
        return int(seconds.timestamp()) * _NANO
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        return int(seconds) * _NANO
    return None


def engine_time_nano(text: Any) -> int | None:
    """The engine's RFC 3339 clock (`SystemTime` of `GET /info`) in Unix nanoseconds."""
    match = _RFC3339.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    base, fraction, zone = match.groups()
    try:
        moment = datetime.fromisoformat(base + ("+00:00" if zone.upper() == "Z" else zone))
    except ValueError:
        return None
    return int(moment.timestamp()) * _NANO + int((fraction or "0").ljust(9, "0"))


def since_param(time_nano: int) -> str:
    """The `since` query value of `/events`: "seconds.nanoseconds" (inclusive)."""
    return f"{time_nano // _NANO}.{time_nano % _NANO:09d}"
