# Docker inspect JSON -> what service discovery needs of a container: its readiness from the
# healthcheck (docs/health.md) and the services it offers to SRV queries (docs/srv.md). Pure
# functions over untrusted input, called by watchers/translate.py: nothing here raises; a bad
# `scopedns.srv.*` label is skipped with one warning naming the container and the label.
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from resolver.model import ServicePort

log = logging.getLogger(__name__)

# Healthcheck states that keep a holder out of answers while another holder is ready.
NOT_READY = frozenset({"starting", "unhealthy"})
SRV_LABEL_PREFIX = "scopedns.srv."
PROTOCOLS = ("tcp", "udp")
# A service name is one DNS label after its underscore: letters, digits and inner hyphens.
_SERVICE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,60}[a-z0-9])?$")
_PORT_SPEC = re.compile(r"^(\d{1,5})(?:/([a-z]+))?$")


def is_health_event(action: str) -> bool:
    """`health_status: healthy` and the like (the engine puts the new state in the action)."""
    return action.startswith("health_status")


def ready_from_inspect(data: Mapping[str, Any]) -> bool:
    """State.Health.Status: no healthcheck, `none` or `healthy` is ready."""
    state = data.get("State")
    health = state.get("Health") if isinstance(state, Mapping) else None
    status = health.get("Status") if isinstance(health, Mapping) else None
    return not (isinstance(status, str) and status.lower() in NOT_READY)


def services_from_inspect(data: Mapping[str, Any], container: str) -> tuple[ServicePort, ...]:
    """Exposed and published ports by number (Config.ExposedPorts, NetworkSettings.Ports,
    HostConfig.PortBindings), then the services named by `scopedns.srv.<name>` labels. A
    label never replaces a numbered port of the same name and protocol."""
    found: dict[tuple[str, str], ServicePort] = {}
    for key in _port_keys(data):
        parsed = _port_spec(key.lower(), "")
        if parsed is not None:
            port, proto = parsed
            found.setdefault((str(port), proto), ServicePort(str(port), proto, port))
    labels = _map(_map(data, "Config"), "Labels")
    for key, value in labels.items():
        if not isinstance(key, str) or not key.lower().startswith(SRV_LABEL_PREFIX):
            continue
        name = key[len(SRV_LABEL_PREFIX):].lower()
        parsed = _port_spec(value.strip().lower(), "tcp") if isinstance(value, str) else None
        if not _SERVICE_NAME.match(name) or parsed is None:
            log.warning("container %s: label %s=%r is not scopedns.srv.<name>=<port>[/tcp|udp]"
                        ", skipped", container, key, value)
            continue
        port, proto = parsed
        found.setdefault((name, proto), ServicePort(name, proto, port))
    return tuple(found.values())


def _port_keys(data: Mapping[str, Any]) -> Iterable[str]:
    sources = (_map(_map(data, "Config"), "ExposedPorts"),
               _map(_map(data, "NetworkSettings"), "Ports"),
               _map(_map(data, "HostConfig"), "PortBindings"))
    for source in sources:
        yield from (key for key in source if isinstance(key, str))


def _port_spec(text: str, default_proto: str) -> tuple[int, str] | None:
    """`8080/tcp` -> (8080, "tcp"); no protocol takes `default_proto` (none: invalid); ports
    outside 1-65535 and protocols other than tcp and udp (sctp) are not SRV services."""
    match = _PORT_SPEC.match(text)
    if match is None:
        return None
    port, proto = int(match.group(1)), match.group(2) or default_proto
    if not 0 < port < 65536 or proto not in PROTOCOLS:
        return None
    return port, proto


def _map(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}
