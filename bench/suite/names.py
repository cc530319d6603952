# The names a snapshot serves, flattened for the peers that have no views: every endpoint of
# every running container on a user-defined network with its address, primary name, aliases and
# `name.network`. Read from the snapshot file itself (Docker inspect objects), so the same
# names feed scopedns (which loads the snapshot) and every peer's generated config.
# Pure: takes the parsed JSON, returns records.
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

_PREDEFINED = {"bridge", "host", "none"}


@dataclass(frozen=True)
class Endpoint:
    """One container on one network, as the host sees it."""

    container: str  # primary name, no leading slash
    network: str
    address: IPv4Address
    aliases: tuple[str, ...]

    @property
    def qualified(self) -> str:
        """`name.network`: Docker's lookup finds it in that network only."""
        return f"{self.container}.{self.network}"

    @property
    def reverse(self) -> str:
        return self.address.reverse_pointer


def endpoints(snapshot: Mapping[str, Any]) -> list[Endpoint]:
    """Every IPv4 endpoint on a user-defined network, in snapshot order."""
    found = []
    for container in snapshot.get("containers", []):
        name = str(container.get("Name", "")).lstrip("/")
        networks = (container.get("NetworkSettings") or {}).get("Networks") or {}
        for network, settings in networks.items():
            address = (settings or {}).get("IPAddress")
            if network in _PREDEFINED or not name or not address:
                continue
            aliases = tuple(a for a in settings.get("Aliases") or () if a != name)
            found.append(Endpoint(name, network, IPv4Address(address), aliases))
    return found


def host_records(found: Sequence[Endpoint]) -> dict[str, IPv4Address]:
    """Name -> one address, as a flat hosts file would hold them: the first holder wins
    (the host view's answer in `first` alias order), lower case."""
    records: dict[str, IPv4Address] = {}
    for endpoint in found:
        for name in (endpoint.container, endpoint.qualified, *endpoint.aliases):
            records.setdefault(name.lower(), endpoint.address)
    return records


def pointer_records(found: Sequence[Endpoint]) -> dict[str, str]:
    """Reverse name -> `name.network`, as scopedns answers PTR (docs/names.md)."""
    return {e.reverse: e.qualified for e in found}


def client(found: Sequence[Endpoint]) -> Endpoint:
    """The container whose view the container-view queries use: the first endpoint."""
    if not found:
        raise ValueError("the snapshot has no container on a user-defined network")
    return found[0]


def neighbours(found: Sequence[Endpoint], of: Endpoint) -> list[Endpoint]:
    """Endpoints on the client's network: the names its view surely holds."""
    return [e for e in found if e.network == of.network]
