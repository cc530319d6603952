# The sidecar's decisions, without the engine (docs/deployment.md, "The sidecar attaches
# itself"): which networks `serve --attach all|labeled` joins, at which address a network's
# label asks it to, and which container it is itself (from /proc/self/mountinfo, then
# /proc/self/cgroup, then the hostname). Pure functions over the engine's JSON and file text.
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

ATTACH_LABEL = "scopedns.attach"
ADDRESS_LABEL = "scopedns.address"
# Networks that are never joined, whatever their labels: Docker serves no names on them, or
# they are not networks a container can be connected to.
NEVER_JOINED = frozenset({"bridge", "host", "none", "ingress", "docker_gwbridge"})
DEFAULT_BRIDGE_OPTION = "com.docker.network.bridge.default_bridge"

_ID = r"[0-9a-f]{64}"
# Docker bind-mounts /etc/hostname, /etc/hosts and /etc/resolv.conf from its own directory
# for the container: .../containers/<id>/hostname (any data root, any cgroup version).
_MOUNT_SOURCE = re.compile(rf"/containers/({_ID})/(?:hostname|hosts|resolv\.conf)\b")
_MOUNT_TARGETS = (" /etc/hostname ", " /etc/hosts ", " /etc/resolv.conf ")
# cgroup v1 (and v2 without a private cgroup namespace): /docker/<id> or docker-<id>.scope.
_CGROUP = re.compile(rf"(?:/docker/|docker-)({_ID})(?:\.scope)?\b")


class AttachMode(StrEnum):
    ALL = "all"  # every user-defined bridge and attachable overlay network
    LABELED = "labeled"  # only those labelled scopedns.attach=true


@dataclass(frozen=True, slots=True)
class Decision:
    join: bool
    address: IPv4Address | IPv6Address | None = None  # the label's address, if any
    problem: str | None = None  # one line for the log when the label is unusable


def _labels(network: Mapping[str, Any]) -> Mapping[str, Any]:
    labels = network.get("Labels")
    return labels if isinstance(labels, Mapping) else {}


def is_joinable(network: Mapping[str, Any]) -> bool:
    """A user-defined bridge, or an overlay network created --attachable (not ingress)."""
    name = str(network.get("Name") or "")
    options = network.get("Options")
    options = options if isinstance(options, Mapping) else {}
    if name in NEVER_JOINED or network.get("Ingress"):
        return False
    if options.get(DEFAULT_BRIDGE_OPTION) == "true":
        return False
    driver = network.get("Driver")
    if driver == "bridge":
        return True
    return driver == "overlay" and bool(network.get("Attachable"))


def decide(network: Mapping[str, Any], mode: AttachMode) -> Decision:
    """Whether to join `network` (the engine's JSON for it) and at which address."""
    if not is_joinable(network):
        return Decision(False)
    labels = _labels(network)
    if mode is AttachMode.LABELED and str(labels.get(ATTACH_LABEL, "")).lower() != "true":
        return Decision(False)
    wanted = str(labels.get(ADDRESS_LABEL, "")).strip()
    if not wanted:
        return Decision(True)
    try:
        return Decision(True, ip_address(wanted))
    except ValueError:
        return Decision(True, problem=f"label {ADDRESS_LABEL}={wanted!r} is not an IP address; "
                                      "joining at an address the engine picks")


def endpoint_config(address: IPv4Address | IPv6Address | None) -> dict[str, Any]:
    """The EndpointConfig of `POST /networks/{id}/connect` for that address."""
    if address is None:
        return {}
    key = "IPv4Address" if address.version == 4 else "IPv6Address"
    return {"IPAMConfig": {key: str(address)}}


def own_id_from_mountinfo(text: str) -> str | None:
    """The container ID in the source of the /etc/hostname, /etc/hosts or /etc/resolv.conf
    bind mount Docker gave us."""
    for line in text.splitlines():
        if any(target in line for target in _MOUNT_TARGETS):
            found = _MOUNT_SOURCE.search(line)
            if found:
                return found.group(1)
    return None


def own_id_from_cgroup(text: str) -> str | None:
    found = _CGROUP.search(text)
    return found.group(1) if found else None


def addresses_on(container: Mapping[str, Any], network_name: str) -> list[str]:
    """The container's addresses on one network (IPv4 then IPv6), from its inspect."""
    endpoint = _endpoints(container).get(network_name)
    if not isinstance(endpoint, Mapping):
        return []
    return [str(endpoint[key]) for key in ("IPAddress", "GlobalIPv6Address") if endpoint.get(key)]


def _endpoints(container: Mapping[str, Any]) -> Mapping[str, Any]:
    settings = container.get("NetworkSettings")
    networks = settings.get("Networks") if isinstance(settings, Mapping) else None
    return networks if isinstance(networks, Mapping) else {}


def network_names(container: Mapping[str, Any]) -> list[str]:
    """Names of the networks the container is on, sorted."""
    return sorted(str(name) for name in _endpoints(container))


def joined_networks(container: Mapping[str, Any]) -> set[str]:
    """Names and IDs of the networks the container is on."""
    endpoints = _endpoints(container)
    joined = {str(name) for name in endpoints}
    joined.update(str(e.get("NetworkID")) for e in endpoints.values()
                  if isinstance(e, Mapping) and e.get("NetworkID"))
    return joined
