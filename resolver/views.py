# What a client sees (docs/views.md, docs/names.md): the immutable snapshot the name table
# publishes after every change, the per-network indexes in it, which view a client gets of it
# (a pure function of snapshot and client), and Docker's lookup over a view. Pure data and
# functions: no I/O, no mutation after construction.
#
# Scale (docs/performance.md): with a thousand networks, walking every network of the host view
# for each new name, or every subnet for each new client address, is milliseconds. So the
# snapshot carries the user-defined networks in endpoint order with their subnets by prefix
# (NetworkOrder, rebuilt only when networks change), and a view of more than SMALL_VIEW networks
# carries a ViewIndex: where each name and address first appears. Both give exactly the walk's
# answer.
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from itertools import islice
from typing import NamedTuple

from resolver.model import ContainerInfo, IPAddress, IPNetwork, NetworkInfo, ServicePort

# Without configuration, loopback only: the host itself may see every network, nobody else.
LOOPBACK_SOURCES = ("127.0.0.0/8", "::1/128")
# Views of up to this many networks are walked; larger ones (the host view of a big engine)
# are indexed when built: ~1.5 us per network once, against ~1 us per network and lookup.
SMALL_VIEW = 16
NO_LINKS: Mapping[str, str] = {}  # shared by the entries of views without link aliases


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
        # Names with the same holders share one tuple (a container's name, ID, aliases and
        # hostname usually do): less memory at scale (docs/performance.md).
        shared: dict[tuple[int, ...], tuple[Holder, ...]] = {}
        primaries: list[tuple[int, str, Holder]] = []
        for name, entries in holders.items():
            entries.sort(key=lambda pair: (pair[0], pair[1].container_id))
            found = tuple(holder for _, holder in entries)
            ordered[name] = shared.setdefault(tuple(map(id, found)), found)
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
class ViewIndex:
    """Where a large view's names are, so that a lookup need not walk every network: the
    position of the first entry holding each name, the entries of each network name, the
    entries with link aliases, and each address's PTR target from the first entry knowing it."""

    first: Mapping[str, int]
    keyed: Mapping[str, tuple[ViewEntry, ...]]
    linked: tuple[ViewEntry, ...]
    reverse: Mapping[IPAddress, str]

    @classmethod
    def build(cls, entries: tuple[ViewEntry, ...]) -> ViewIndex:
        first: dict[str, int] = {}
        reverse: dict[IPAddress, str] = {}
        for position in range(len(entries) - 1, -1, -1):  # earlier entries overwrite later
            records = entries[position].records
            first.update(dict.fromkeys(records.holders, position))
            reverse.update(records.reverse)
        keyed: dict[str, list[ViewEntry]] = {}
        for entry in entries:
            keyed.setdefault(entry.records.name_key, []).append(entry)
        return cls(first, {key: tuple(found) for key, found in keyed.items()},
                   tuple(entry for entry in entries if entry.links), reverse)


@dataclass(frozen=True, slots=True)
class View:
    """The networks a client sees, in Docker's endpoint order. `key` names the view for caches;
    `index` is set for views of more than SMALL_VIEW networks (make_view)."""

    key: str
    entries: tuple[ViewEntry, ...]
    may_forward: bool = True
    ndots_set: bool = False
    index: ViewIndex | None = None


def make_view(key: str, entries: tuple[ViewEntry, ...], may_forward: bool = True,
              ndots_set: bool = False) -> View:
    """A view, indexed when it is large."""
    index = ViewIndex.build(entries) if len(entries) > SMALL_VIEW else None
    return View(key, entries, may_forward, ndots_set, index)


@dataclass(frozen=True, slots=True)
class NetworkOrder:
    """The user-defined networks in Docker's endpoint order, and their subnets by (version,
    prefix length) -> network address as an int -> positions in that order."""

    networks: tuple[NetworkInfo, ...] = ()
    subnets: Mapping[tuple[int, int], Mapping[int, tuple[int, ...]]] = field(
        default_factory=dict)

    @classmethod
    def build(cls, networks: Iterable[NetworkInfo]) -> NetworkOrder:
        ordered = tuple(sorted_networks(n for n in networks if n.user_defined))
        subnets: dict[tuple[int, int], dict[int, tuple[int, ...]]] = {}
        for position, network in enumerate(ordered):
            for subnet in network.subnets:
                by_address = subnets.setdefault((subnet.version, subnet.prefixlen), {})
                key = int(subnet.network_address)
                by_address[key] = (*by_address.get(key, ()), position)
        return cls(ordered, subnets)

    def holding(self, source: IPAddress) -> list[NetworkInfo]:
        """The networks with a subnet holding `source`, in endpoint order."""
        positions: list[int] = []
        bits, value = source.max_prefixlen, int(source)
        for (version, prefix), by_address in self.subnets.items():
            if version == source.version:
                mask = (1 << bits) - (1 << (bits - prefix))
                positions += by_address.get(value & mask, ())
        return [self.networks[position] for position in sorted(positions)]


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
    order: NetworkOrder = field(default_factory=NetworkOrder)  # of `networks`


def view_for(snapshot: TableSnapshot, source: IPAddress) -> View | None:
    """The view a client at `source` gets (docs/views.md): its container's, else the network
    view of a user-defined subnet holding it, else the host view, else None (REFUSED)."""
    if isinstance(source, IPv6Address) and source.ipv4_mapped is not None:
        source = source.ipv4_mapped
    container_id = snapshot.clients.get(source)
    if container_id is not None:
        return container_view(snapshot, container_id)
    for network in snapshot.order.holding(source):
        records = snapshot.records.get(network.id)
        if records is not None:
            return View(f"n:{network.id}", (ViewEntry(records, NO_LINKS),),
                        may_forward=not network.internal)
    if snapshot.host_view.admits(source):
        entries = tuple(ViewEntry(snapshot.records[n.id], NO_LINKS)
                        for n in snapshot.order.networks if n.id in snapshot.records)
        return make_view("h", entries, may_forward=True)
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
    return make_view(f"c:{container.id}", tuple(entry for _, entry in entries), may_forward,
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
    index = view.index
    for request, network_key in candidate_splits(name):
        if index is None:
            found = (_walk(view.entries, request, network_key, True)
                     or _walk(view.entries, request, network_key, False))
        else:
            found = _find_indexed(view.entries, index, request, network_key)
        if found is not None:
            return found
    return None


def _walk(entries: Iterable[ViewEntry], request: str, network_key: str | None,
          alias_pass: bool) -> NameMatch | None:
    """One pass of Docker's lookup over `entries` in order: link aliases, or names."""
    for entry in entries:
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


def _find_indexed(entries: tuple[ViewEntry, ...], index: ViewIndex, request: str,
                  network_key: str | None) -> NameMatch | None:
    """The walk's answer from the index: only entries with link aliases can match the alias
    pass; in the name pass no entry before the first holder can match."""
    found = _walk(index.linked, request, network_key, True)
    if found is not None:
        return found
    if network_key is not None:
        return _walk(index.keyed.get(network_key, ()), request, network_key, False)
    first = index.first.get(request)
    if first is None:
        return None
    return _walk(islice(entries, first, None), request, None, False)


def resolve_name_in(view: View, name: str) -> tuple[NetworkRecords, tuple[Holder, ...]] | None:
    """resolve_name, with the network the holders were found on."""
    found = find_name(view, name)
    if found is None:
        return None
    records = found.entry.records
    return records, records.holders[found.target]


def resolve_address(view: View, address: IPAddress) -> str | None:
    """PTR target for `address` from the first network of `view` that knows it."""
    if view.index is not None:
        return view.index.reverse.get(address)
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
