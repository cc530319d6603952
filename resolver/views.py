# What a client sees (docs/views.md, docs/names.md): the immutable snapshot the name table
# publishes after every change, the per-network indexes in it, which view a client gets of it
# (a pure function of snapshot and client), and Docker's lookup over a view. Pure data and
# functions: no I/O, no mutation after construction.
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import NamedTuple

from resolver.model import ContainerInfo, IPAddress, IPNetwork, NetworkInfo, ServicePort

# Without configuration, loopback only: the host itself may see every network, nobody else.
LOOPBACK_SOURCES = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True, slots=True)
class Holder:
    """One endpoint holding a name on a network."""

    container_id: str
    primary_name: str
    ipv4: IPv4Address | None
    ipv6: IPv6Address | None
    ready: bool = True  # health (docs/health.md)
    services: tuple[ServicePort, ...] = ()  # SRV (docs/srv.md)


@dataclass(frozen=True, slots=True)
class NetworkRecords:
    """The names of one user-defined network: name -> holders in registration order, and
    address -> PTR target (`<primary name>.<network>.` of the earliest holder)."""

    network: NetworkInfo
    name_key: str
    holders: Mapping[str, tuple[Holder, ...]]
    reverse: Mapping[IPAddress, str]

    @classmethod
    def build(
        cls, network: NetworkInfo, holders: Mapping[str, list[tuple[int, Holder]]]
    ) -> NetworkRecords:
        ordered: dict[str, tuple[Holder, ...]] = {}
        primaries: list[tuple[int, str, Holder]] = []
        for name, entries in holders.items():
            entries.sort(key=lambda pair: (pair[0], pair[1].container_id))
            ordered[name] = tuple(holder for _, holder in entries)
            primaries.extend(
                (seq, h.container_id, h) for seq, h in entries if h.primary_name.lower() == name
            )
        reverse: dict[IPAddress, str] = {}
        if network.user_defined:
            for _, _, holder in sorted(primaries, key=lambda t: (t[0], t[1])):
                for addr in (holder.ipv4, holder.ipv6):
                    if addr is not None:
                        reverse.setdefault(addr, f"{holder.primary_name}.{network.name}.")
        return cls(network, network.name.lower(), ordered, reverse)


@dataclass(frozen=True, slots=True)
class ViewEntry:
    """One network of a view, with the link aliases the viewing endpoint declared on it
    (lower-cased alias -> lower-cased target name)."""

    records: NetworkRecords
    links: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class View:
    """The networks a client sees, in Docker's endpoint order. `key` names the view for caches."""

    key: str
    entries: tuple[ViewEntry, ...]
    may_forward: bool = True
    ndots_set: bool = False


@dataclass(frozen=True, slots=True)
class HostViewPolicy:
    """Which sources get the host view (`--host-view-from`)."""

    sources: tuple[IPNetwork, ...] = tuple(ip_network(c) for c in LOOPBACK_SOURCES)

    def admits(self, source: IPAddress) -> bool:
        return any(source.version == net.version and source in net for net in self.sources)


@dataclass(frozen=True, slots=True)
class TableSnapshot:
    """The name table as of one change: what every answer is computed from. The table builds
    a new one per change and never edits a published one (its mappings are not shared with
    the table's working state)."""

    generation: int = 0
    synced: bool = False
    networks: Mapping[str, NetworkInfo] = field(default_factory=dict)
    containers: Mapping[str, ContainerInfo] = field(default_factory=dict)
    records: Mapping[str, NetworkRecords] = field(default_factory=dict)
    clients: Mapping[IPAddress, str] = field(default_factory=dict)  # address -> container id
    host_view: HostViewPolicy = field(default_factory=HostViewPolicy)


def view_for(snapshot: TableSnapshot, source: IPAddress) -> View | None:
    """The view a client at `source` gets (docs/views.md): its container's, else the network
    view of a user-defined subnet holding it, else the host view, else None (REFUSED)."""
    if isinstance(source, IPv6Address) and source.ipv4_mapped is not None:
        source = source.ipv4_mapped
    container_id = snapshot.clients.get(source)
    if container_id is not None:
        return container_view(snapshot, container_id)
    for network in sorted_networks(snapshot.networks.values()):
        records = snapshot.records.get(network.id)
        if network.user_defined and records is not None and any(
                source in subnet for subnet in network.subnets):
            return View(f"n:{network.id}", (ViewEntry(records),),
                        may_forward=not network.internal)
    if snapshot.host_view.admits(source):
        entries = tuple(ViewEntry(snapshot.records[n.id])
                        for n in sorted_networks(snapshot.networks.values())
                        if n.user_defined and n.id in snapshot.records)
        return View("h", entries, may_forward=True)
    return None


def container_view(snapshot: TableSnapshot, container_id: str) -> View | None:
    """The view of a known container, whatever address it asks from: its user-defined
    networks in Docker's endpoint order with its link aliases; None if it is not running."""
    container = snapshot.containers.get(container_id)
    if container is None:
        return None
    entries: list[tuple[NetworkInfo, ViewEntry]] = []
    may_forward = False
    for endpoint in container.endpoints:
        network = snapshot.networks.get(endpoint.network_id)
        if network is None:
            continue
        may_forward = may_forward or not network.internal
        records = snapshot.records.get(network.id)
        if network.user_defined and records is not None:
            links = {link.alias.lower(): link.target.lower() for link in endpoint.links}
            entries.append((network, ViewEntry(records, links)))
    entries.sort(key=lambda pair: endpoint_order(pair[0]))
    return View(f"c:{container.id}", tuple(entry for _, entry in entries), may_forward,
                container.ndots_set)


def endpoint_order(network: NetworkInfo) -> tuple[bool, int, str]:
    """Docker's Endpoint.Less: internal last, more gateway families first, then by name."""
    return (network.internal, -network.gateway_families, network.name)


def sorted_networks(networks: Iterable[NetworkInfo]) -> list[NetworkInfo]:
    return sorted(networks, key=endpoint_order)


def candidate_splits(name: str) -> list[tuple[str, str | None]]:
    """`a.b.c` -> [("a.b.c", None), ("a.b", "c"), ("a", "b.c")]: Docker's name/network splits."""
    candidates: list[tuple[str, str | None]] = [(name, None)]
    cut = len(name)
    while (cut := name.rfind(".", 0, cut)) > 0:
        candidates.append((name[:cut], name[cut + 1 :]))
    return candidates


def resolve_name(view: View, name: str) -> tuple[Holder, ...] | None:
    """Holders of `name` (lower-case, no trailing dot) in the first network of `view` that has
    it, trying link aliases before names at each split; None when the view has no such name."""
    found = resolve_name_in(view, name)
    return None if found is None else found[1]


def answering(holders: tuple[Holder, ...], health: bool) -> tuple[Holder, ...]:
    """The holders that answer for a name on one network (docs/health.md): the ready ones when
    any is ready, else all of them (fail open). Registration order is kept."""
    if not health or all(h.ready for h in holders):
        return holders
    ready = tuple(h for h in holders if h.ready)
    return ready or holders


class NameMatch(NamedTuple):
    """Where Docker's lookup found a name: the view entry, the split's name part (`request`)
    and network part, whether a link alias matched, and the name held on that network."""

    entry: ViewEntry
    request: str
    network_key: str | None
    via_link: bool
    target: str


def find_name(view: View, name: str) -> NameMatch | None:
    """Docker's lookup (docs/names.md): each split of `name`, link aliases before names, the
    first network of `view` holding it wins."""
    for request, network_key in candidate_splits(name):
        for alias_pass in (True, False):
            for entry in view.entries:
                if network_key is not None and network_key != entry.records.name_key:
                    continue
                target = entry.links.get(request)
                if alias_pass:
                    if target is None:
                        continue
                elif target is not None:
                    continue  # a link alias on this endpoint shadows the real name
                else:
                    target = request
                if entry.records.holders.get(target):
                    return NameMatch(entry, request, network_key, alias_pass, target)
    return None


def resolve_name_in(view: View, name: str) -> tuple[NetworkRecords, tuple[Holder, ...]] | None:
    """resolve_name, with the network the holders were found on."""
    found = find_name(view, name)
    if found is None:
        return None
    records = found.entry.records
    return records, records.holders[found.target]


def resolve_address(view: View, address: IPAddress) -> str | None:
    """PTR target for `address` from the first network of `view` that knows it."""
    for entry in view.entries:
        target = entry.records.reverse.get(address)
        if target is not None:
            return target
    return None


def address_from_ptr_name(name: str) -> IPAddress | None:
    """`4.3.2.1.in-addr.arpa` or a 32-nibble `ip6.arpa` name (lower-case) -> the address."""
    if name.endswith(".in-addr.arpa"):
        labels = name[: -len(".in-addr.arpa")].split(".")
        if len(labels) != 4 or not all(label.isdigit() and len(label) <= 3 for label in labels):
            return None
        text = ".".join(reversed(labels))
    elif name.endswith(".ip6.arpa"):
        nibbles = name[: -len(".ip6.arpa")].split(".")
        if len(nibbles) != 32 or not all(len(n) == 1 for n in nibbles):
            return None
        digits = "".join(reversed(nibbles))
        text = ":".join(digits[i : i + 4] for i in range(0, 32, 4))
    else:
        return None
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv4Address) and str(address) != text:
        return None  # leading zeros such as 01.0.0.10 are not Docker's reverse key
    return address
