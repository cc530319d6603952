# An in-memory engine behind watchers.engine_api.Engine, for testing the watcher's own logic
# (replay, stale events, the `left` filter, reconcile counts) and driving it through random
# histories (test_isolation_property.py) without Docker: the test sets the engine's state as
# inspect JSON, queues events in the engine's order with the engine's clock, picks the order
# of full listings, and cuts the event stream or the whole connection when it likes.
from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from watchers.engine_api import EngineListing, Lookup, StreamEnded

SECOND = 1_000_000_000


def network_json(network_id: str, name: str, subnet: str, internal: bool = False
                 ) -> dict[str, Any]:
    return {"Id": network_id, "Name": name, "Internal": internal, "EnableIPv6": False,
            "IPAM": {"Config": [{"Subnet": subnet}]}}


def container_json(container_id: str, name: str, started_at: str,
                   endpoints: Mapping[str, tuple[str, str, list[str]]]) -> dict[str, Any]:
    """`endpoints`: network name -> (network id, IPv4 address, aliases)."""
    return {
        "Id": container_id, "Name": f"/{name}", "Created": started_at,
        "State": {"Running": True, "StartedAt": started_at},
        "Config": {"Hostname": container_id[:12]},
        "NetworkSettings": {"Networks": {
            net: {"NetworkID": nid, "IPAddress": ip, "Aliases": aliases}
            for net, (nid, ip, aliases) in endpoints.items()}},
    }


@dataclass
class MemoryEngine:
    """The engine's state (inspect JSON by id), its event log, and its clock."""

    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    clock: int = 1_000 * SECOND
    down: bool = False  # connections fail while True
    listing_seed: int | None = None  # None: listings in insertion order; else shuffled by it
    connections: int = 0
    inspected: list[str] = field(default_factory=list)  # container ids, in order
    _feeds: list[MemoryFeed] = field(default_factory=list)

    def connect(self) -> MemoryEngineClient:
        self.connections += 1
        return MemoryEngineClient(self)

    def emit(self, kind: str, action: str, actor_id: str, **attributes: str) -> int:
        """Append an event at the engine's next tick; returns its time."""
        self.clock += SECOND // 1000
        self._append({"Type": kind, "Action": action, "timeNano": self.clock,
                      "Actor": {"ID": actor_id, "Attributes": attributes}})
        return self.clock

    def redeliver(self, index: int) -> None:
        """Event `index` comes again, late, stamped as it was (a duplicate, out of order)."""
        self._append(dict(self.events[index]))

    def _append(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        for feed in self._feeds:
            feed.wake.set()

    def cut_streams(self) -> None:
        for feed in self._feeds:
            feed.ended = True
            feed.wake.set()


@dataclass
class MemoryFeed:
    """Events already logged that a subscription replays (`backlog`, indices into the log),
    then every event logged from `position` on."""

    engine: MemoryEngine
    position: int
    backlog: list[int] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False

    async def next(self, timeout: float | None) -> Mapping[str, Any] | None:
        if self.backlog and not self.ended:
            return self.engine.events[self.backlog.pop(0)]
        try:
            async with asyncio.timeout(timeout):
                while self.position >= len(self.engine.events):
                    if self.ended:
                        raise StreamEnded("event stream ended")
                    self.wake.clear()
                    await self.wake.wait()
        except TimeoutError:
            return None
        self.position += 1
        return self.engine.events[self.position - 1]

    def close(self) -> None:
        self.ended = True
        if self in self.engine._feeds:
            self.engine._feeds.remove(self)


class MemoryEngineClient:
    """One connection cycle's client (watchers.engine_api.Engine)."""

    def __init__(self, engine: MemoryEngine) -> None:
        self._engine = engine
        self._feeds: list[MemoryFeed] = []

    def _check(self) -> None:
        if self._engine.down:
            raise OSError("engine unreachable")

    async def now(self) -> int | None:
        """The engine's clock, which has moved on since its last event."""
        self._check()
        return self._engine.clock + 1

    def subscribe(self, since_ns: int | None) -> MemoryFeed:
        """As the engine does: the logged events stamped `since_ns` or later, then new ones."""
        events = self._engine.events
        backlog = [] if since_ns is None else [
            i for i, e in enumerate(events) if e["timeNano"] >= since_ns]
        feed = MemoryFeed(self._engine, len(events), backlog)
        self._engine._feeds.append(feed)
        self._feeds.append(feed)
        return feed

    async def listing(self, concurrency: int) -> EngineListing:
        self._check()
        networks = list(self._engine.networks.values())
        running = [c for c in self._engine.containers.values() if c["State"]["Running"]]
        if self._engine.listing_seed is not None:
            random.Random(self._engine.listing_seed).shuffle(networks)
            random.Random(self._engine.listing_seed).shuffle(running)
        return EngineListing(tuple(networks), tuple(running))

    async def container(self, container_id: str) -> Mapping[str, Any] | Lookup:
        self._check()
        self._engine.inspected.append(container_id)
        return self._engine.containers.get(container_id, Lookup.GONE)

    async def network(self, network_id: str) -> Mapping[str, Any] | Lookup:
        self._check()
        return self._engine.networks.get(network_id, Lookup.GONE)

    async def close(self) -> None:
        """Closes this client's feeds (another client's, another watcher's, go on)."""
        for feed in self._feeds:
            feed.close()
