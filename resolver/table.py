# The name table: the only owner of name state. Sources (Docker watcher, snapshot, tests) hand it
# typed records from resolver.model; every change is applied in one synchronous call, so a query
# sees either the old table or the new one, never half of a change (style.md rule 2).
#
# Per network it keeps an immutable NetworkRecords index (name -> holders in registration order,
# address -> PTR name), rebuilt only for the networks a change touches. Views (SPEC §2) are
# derived from it per source address; callers cache them until the next change (on_change).
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from ipaddress import IPv6Address

from resolver.model import (
    ContainerInfo,
    EndpointInfo,
    EngineState,
    IPAddress,
    NetworkInfo,
)
from resolver.views import Holder, HostViewPolicy, NetworkRecords, View, ViewEntry

RegistrationKey = tuple[str, str, str]  # (container id, network id, lower-cased name)


class NameTable:
    """Per-network names of running containers, and the views clients get of them."""

    def __init__(self, host_view: HostViewPolicy | None = None) -> None:
        self._host_view = host_view or HostViewPolicy()
        self._networks: dict[str, NetworkInfo] = {}
        self._containers: dict[str, ContainerInfo] = {}
        self._members: dict[str, dict[str, EndpointInfo]] = {}  # network id -> cid -> endpoint
        self._registered: dict[RegistrationKey, int] = {}
        self._next_seq = 0
        self._records: dict[str, NetworkRecords] = {}
        self._client_ips: dict[IPAddress, str] = {}
        self._listeners: list[Callable[[], None]] = []
        self.synced = False
        self.generation = 0

    # ----- reading -------------------------------------------------------------------------

    @property
    def networks(self) -> tuple[NetworkInfo, ...]:
        return tuple(self._networks.values())

    @property
    def containers(self) -> tuple[ContainerInfo, ...]:
        return tuple(self._containers.values())

    def container(self, container_id: str) -> ContainerInfo | None:
        return self._containers.get(container_id)

    def records(self, network_id: str) -> NetworkRecords | None:
        return self._records.get(network_id)

    def view_for(self, source: IPAddress) -> View | None:
        """The view a client at `source` gets (SPEC §2), or None: REFUSED."""
        if isinstance(source, IPv6Address) and source.ipv4_mapped is not None:
            source = source.ipv4_mapped
        return self._build_view(source)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every change (answer caches hang on this)."""
        self._listeners.append(listener)

    # ----- changing ------------------------------------------------------------------------

    def replace_all(self, state: EngineState) -> None:
        """Make the table equal to a full engine state (first sync, reconcile, snapshot).

        Endpoints and names that persist keep their registration order; new ones join at the
        end in the deterministic order of EngineState.registration_order(). A container that
        restarted meanwhile (another start time) rejoins at the end, as it would have live."""
        self._networks = {n.id: n for n in state.networks}
        ordered = state.registration_order()
        before = self._containers
        self._containers = {c.id: c for c in ordered}
        previous = self._registered
        self._registered = {}
        for container in ordered:
            known = before.get(container.id)
            restarted = known is not None and known.started_at != container.started_at
            for key in self._registration_keys(container):
                seq = None if restarted else previous.get(key)
                self._registered[key] = seq if seq is not None else self._take_seq()
        self._rebuild_members()
        self._rebuild(self._networks.keys())
        self.synced = True

    def upsert_network(self, network: NetworkInfo) -> None:
        self._networks[network.id] = network
        self._rebuild([network.id])

    def remove_network(self, network_id: str) -> None:
        if self._networks.pop(network_id, None) is None and network_id not in self._members:
            return
        for cid, container in list(self._containers.items()):
            kept = tuple(e for e in container.endpoints if e.network_id != network_id)
            if len(kept) != len(container.endpoints):
                self._containers[cid] = replace(container, endpoints=kept)
        self._registered = {k: v for k, v in self._registered.items() if k[1] != network_id}
        self._members.pop(network_id, None)
        self._records.pop(network_id, None)
        self._changed()

    def upsert_container(self, container: ContainerInfo) -> None:
        """A running container as it is now: new endpoints and names join at the end of their
        registration order; ones it no longer has leave; ones it kept keep their place."""
        old = self._containers.get(container.id)
        self._containers[container.id] = container
        touched = self._unregister(old, keep=set(self._registration_keys(container)))
        for key in self._registration_keys(container):
            if key not in self._registered:
                self._registered[key] = self._take_seq()
        touched |= {e.network_id for e in container.endpoints}
        self._set_membership(old, container)
        self._rebuild(touched)

    def remove_container(self, container_id: str) -> None:
        """The container stopped, died or was destroyed: all its names leave at once."""
        old = self._containers.pop(container_id, None)
        if old is None:
            return
        touched = self._unregister(old, keep=set())
        self._set_membership(old, None)
        self._rebuild(touched)

    # ----- internals -----------------------------------------------------------------------

    def _take_seq(self) -> int:
        self._next_seq += 1
        return self._next_seq

    def _registration_keys(self, container: ContainerInfo) -> list[RegistrationKey]:
        return [
            (container.id, ep.network_id, name.lower())
            for ep in container.endpoints
            for name in container.dns_names(ep)
        ]

    def _unregister(self, old: ContainerInfo | None, keep: set[RegistrationKey]) -> set[str]:
        if old is None:
            return set()
        for key in self._registration_keys(old):
            if key not in keep:
                self._registered.pop(key, None)
        return {e.network_id for e in old.endpoints}

    def _set_membership(self, old: ContainerInfo | None, new: ContainerInfo | None) -> None:
        if old is not None:
            for ep in old.endpoints:
                self._members.get(ep.network_id, {}).pop(old.id, None)
        if new is not None:
            for ep in new.endpoints:
                self._members.setdefault(ep.network_id, {})[new.id] = ep

    def _rebuild_members(self) -> None:
        self._members = {}
        for container in self._containers.values():
            self._set_membership(None, container)

    def _rebuild(self, network_ids: Iterable[str]) -> None:
        for nid in set(network_ids):
            network = self._networks.get(nid)
            if network is None:
                self._records.pop(nid, None)
                continue
            self._records[nid] = self._index_network(network)
        self._changed()

    def _index_network(self, network: NetworkInfo) -> NetworkRecords:
        holders: dict[str, list[tuple[int, Holder]]] = {}
        for cid, ep in self._members.get(network.id, {}).items():
            container = self._containers[cid]
            for name in container.dns_names(ep):
                key = name.lower()
                seq = self._registered.get((cid, network.id, key), 0)
                holder = Holder(cid, container.name, ep.ipv4, ep.ipv6)
                holders.setdefault(key, []).append((seq, holder))
        return NetworkRecords.build(network, holders)

    def _changed(self) -> None:
        self._client_ips = {
            addr: cid
            for cid, container in self._containers.items()
            for ep in container.endpoints
            for addr in ep.addresses
        }
        self.generation += 1
        for listener in self._listeners:
            listener()

    def _build_view(self, source: IPAddress) -> View | None:
        cid = self._client_ips.get(source)
        if cid is not None:
            return self._container_view(self._containers[cid])
        for network in self._sorted_networks(self._networks.values()):
            if network.user_defined and any(source in net for net in network.subnets):
                return View(f"n:{network.id}", (ViewEntry(self._records[network.id]),),
                            may_forward=not network.internal)
        if self._host_view.admits(source):
            entries = tuple(ViewEntry(self._records[n.id])
                            for n in self._sorted_networks(self._networks.values())
                            if n.user_defined and n.id in self._records)
            return View("h", entries, may_forward=True)
        return None

    def _container_view(self, container: ContainerInfo) -> View:
        entries: list[tuple[NetworkInfo, ViewEntry]] = []
        may_forward = False
        for ep in container.endpoints:
            network = self._networks.get(ep.network_id)
            if network is None:
                continue
            may_forward = may_forward or not network.internal
            records = self._records.get(network.id)
            if network.user_defined and records is not None:
                links = {link.alias.lower(): link.target.lower() for link in ep.links}
                entries.append((network, ViewEntry(records, links)))
        entries.sort(key=lambda pair: _endpoint_order(pair[0]))
        return View(f"c:{container.id}", tuple(e for _, e in entries), may_forward,
                    container.ndots_set)

    @staticmethod
    def _sorted_networks(networks: Iterable[NetworkInfo]) -> list[NetworkInfo]:
        return sorted(networks, key=_endpoint_order)


def _endpoint_order(network: NetworkInfo) -> tuple[bool, int, str]:
    """Docker's Endpoint.Less: internal last, more gateway families first, then by name."""
    return (network.internal, -network.gateway_families, network.name)
