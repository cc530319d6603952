# The name table: the only owner of name state (docs/design.md). Sources (the Docker watcher, a
# snapshot file, tests) hand it typed records from resolver.model; every change is applied in
# one synchronous call and ends by publishing a new immutable TableSnapshot, so a query sees
# either the old table or the new one, never half of a change.
#
# Per network it keeps an immutable NetworkRecords index (name -> holders in registration
# order, address -> PTR name), rebuilt only for the networks a change touches; the map from
# client address to container is updated for the containers that changed. Which view a client
# gets is a pure function of the snapshot (resolver/views.py).
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from resolver.model import (
    ContainerInfo,
    EndpointInfo,
    EngineState,
    IPAddress,
    NetworkInfo,
)
from resolver.views import (
    Holder,
    HostViewPolicy,
    NetworkOrder,
    NetworkRecords,
    TableSnapshot,
    View,
    view_for,
)

RegistrationKey = tuple[str, str, str]  # (container id, network id, lower-cased name)


class NameTable:
    """Per-network names of running containers; publishes a snapshot after every change."""

    def __init__(self, host_view: HostViewPolicy | None = None) -> None:
        self._host_view = host_view or HostViewPolicy()
        self._networks: dict[str, NetworkInfo] = {}
        self._containers: dict[str, ContainerInfo] = {}
        self._members: dict[str, dict[str, EndpointInfo]] = {}  # network id -> cid -> endpoint
        self._registered: dict[RegistrationKey, int] = {}
        self._next_seq = 0
        self._records: dict[str, NetworkRecords] = {}
        self._order = NetworkOrder()  # rebuilt when networks change, shared by snapshots
        self._order_stale = False
        # address -> the containers holding it, latest claim last (a reused address may be
        # held twice for a moment, until the old holder's stop is applied).
        self._claims: dict[IPAddress, tuple[str, ...]] = {}
        self._clients: dict[IPAddress, str] = {}  # address -> its latest claim
        self._listeners: list[Callable[[], None]] = []
        self._synced = False
        self._loads = 0
        self.snapshot = TableSnapshot(host_view=self._host_view)

    # ----- reading -------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced

    @property
    def loads(self) -> int:
        """How many times the whole table was replaced (replace_all): a listener tells a full
        load from a single change by it."""
        return self._loads

    @property
    def generation(self) -> int:
        return self.snapshot.generation

    @property
    def networks(self) -> tuple[NetworkInfo, ...]:
        return tuple(self.snapshot.networks.values())

    @property
    def containers(self) -> tuple[ContainerInfo, ...]:
        return tuple(self.snapshot.containers.values())

    def container(self, container_id: str) -> ContainerInfo | None:
        return self.snapshot.containers.get(container_id)

    def records(self, network_id: str) -> NetworkRecords | None:
        return self.snapshot.records.get(network_id)

    def view_for(self, source: IPAddress) -> View | None:
        """The view a client at `source` gets now, or None: REFUSED (docs/views.md)."""
        return view_for(self.snapshot, source)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every change, once the new snapshot is published."""
        self._listeners.append(listener)

    # ----- changing ------------------------------------------------------------------------

    def replace_all(self, state: EngineState) -> None:
        """Make the table equal to a full engine state (first sync, reconcile, snapshot).

        Endpoints and names that persist keep their registration order; new ones join at the
        end in the deterministic order of EngineState.registration_order(). A container that
        restarted meanwhile (another start time) rejoins at the end, as it would have live."""
        self._networks = {n.id: n for n in state.networks}
        self._order_stale = True
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
        self._members = {}
        self._claims = {}
        self._clients = {}
        for container in ordered:
            self._set_membership(None, container)
        self._synced = True
        self._loads += 1
        self._rebuild(self._networks.keys())

    def upsert_network(self, network: NetworkInfo) -> None:
        if self._networks.get(network.id) != network:
            self._networks[network.id] = network
            self._order_stale = True
        self._rebuild([network.id])

    def remove_network(self, network_id: str) -> None:
        if self._networks.pop(network_id, None) is None and network_id not in self._members:
            return
        self._order_stale = True
        for cid in list(self._members.get(network_id, {})):
            old = self._containers[cid]
            kept = tuple(e for e in old.endpoints if e.network_id != network_id)
            self._containers[cid] = replace(old, endpoints=kept)
            self._set_membership(old, self._containers[cid])
        self._registered = {k: v for k, v in self._registered.items() if k[1] != network_id}
        self._members.pop(network_id, None)
        self._rebuild([network_id])

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
            (container.id, ep.network_id, _key(name))
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
        """Move one container's endpoints and client addresses from `old` to `new`."""
        old_addresses = set() if old is None else _addresses(old)
        new_addresses = set() if new is None else _addresses(new)
        if old is not None:
            for ep in old.endpoints:
                self._members.get(ep.network_id, {}).pop(old.id, None)
            for address in old_addresses - new_addresses:
                claims = tuple(c for c in self._claims.get(address, ()) if c != old.id)
                if claims:
                    self._claims[address] = claims
                    self._clients[address] = claims[-1]
                else:
                    self._claims.pop(address, None)
                    self._clients.pop(address, None)
        if new is not None:
            for ep in new.endpoints:
                self._members.setdefault(ep.network_id, {})[new.id] = ep
            for address in new_addresses - old_addresses:
                self._claims[address] = (*self._claims.get(address, ()), new.id)
                self._clients[address] = new.id

    def _rebuild(self, network_ids: Iterable[str]) -> None:
        for nid in set(network_ids):
            network = self._networks.get(nid)
            if network is None:
                self._records.pop(nid, None)
                continue
            self._records[nid] = self._index_network(network)
        self._publish()

    def _index_network(self, network: NetworkInfo) -> NetworkRecords:
        holders: dict[str, list[tuple[int, Holder]]] = {}
        for cid, ep in self._members.get(network.id, {}).items():
            container = self._containers[cid]
            # One Holder per endpoint, whatever the number of its names.
            holder = Holder(cid, container.name, ep.ipv4, ep.ipv6, container.ready,
                            container.services)
            for name in container.dns_names(ep):
                key = _key(name)
                seq = self._registered.get((cid, network.id, key), 0)
                holders.setdefault(key, []).append((seq, holder))
        return NetworkRecords.build(network, holders)

    def _publish(self) -> None:
        if self._order_stale:
            self._order = NetworkOrder.build(self._networks.values())
            self._order_stale = False
        self.snapshot = TableSnapshot(
            generation=self.snapshot.generation + 1,
            synced=self._synced,
            networks=dict(self._networks),
            containers=dict(self._containers),
            records=dict(self._records),
            clients=dict(self._clients),
            host_view=self._host_view,
            order=self._order,
        )
        for listener in self._listeners:
            listener()


def _key(name: str) -> str:
    """A name as the table keys it, lower-cased: the record's own string when it is lower-case
    already (most are), so the registration keys and the network indexes hold no copies of it
    (docs/performance.md)."""
    lowered = name.lower()
    return name if lowered == name else lowered


def _addresses(container: ContainerInfo) -> set[IPAddress]:
    return {address for ep in container.endpoints for address in ep.addresses}
