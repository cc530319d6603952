# The Docker watcher's own logic, without an engine (tests/memory_engine.py): events missed
# while the engine was away are replayed in order before the reconcile; a stale removal only
# makes the watcher ask the engine; a disconnect wins over an inspect that still shows the
# endpoint; a reconcile says what it added, removed and changed (docs/failures.md).
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from resolver.table import NameTable
from tests.memory_engine import SECOND, MemoryEngine, container_json, network_json
from watchers.docker import DockerWatcher

NET1, NET2 = "n1" * 32, "n2" * 32
A, B = "a" * 64, "b" * 64


def two_containers_on_net1() -> MemoryEngine:
    engine = MemoryEngine()
    engine.networks[NET1] = network_json(NET1, "net1", "10.91.0.0/24")
    engine.networks[NET2] = network_json(NET2, "net2", "10.92.0.0/24")
    engine.containers[A] = container_json(A, "a", "2026-01-01T00:00:01Z",
                                          {"net1": (NET1, "10.91.0.2", ["app"])})
    engine.containers[B] = container_json(B, "b", "2026-01-01T00:00:02Z",
                                          {"net1": (NET1, "10.91.0.3", ["app"])})
    return engine


def connect(engine: MemoryEngine, cid: str, net: str, nid: str, ip: str) -> None:
    """`docker network connect --alias app`: the inspect changes, then the event."""
    endpoints = engine.containers[cid]["NetworkSettings"]["Networks"]
    endpoints[net] = {"NetworkID": nid, "IPAddress": ip, "Aliases": ["app"]}
    engine.emit("network", "connect", nid, container=cid)


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def watching(engine: MemoryEngine) -> AsyncIterator[NameTable]:
    table = NameTable()
    watcher = DockerWatcher(table, None, connect=engine.connect, backoff_initial=0.01,
                            backoff_max=0.05, resync_interval=0)
    task = asyncio.create_task(watcher.run())
    try:
        await until(lambda: table.synced, "the first sync")
        yield table
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await watcher.close()


def holders(table: NameTable, nid: str, name: str) -> list[str]:
    records = table.records(nid)
    assert records is not None
    return [h.container_id for h in records.holders.get(name, ())]


async def test_events_missed_while_away_are_replayed_in_their_order() -> None:
    """b joins net2 before a while the engine is away. A listing alone would order them by
    start time (a first); the replay keeps the order they joined in."""
    engine = two_containers_on_net1()
    async with watching(engine) as table:
        engine.down = True
        engine.cut_streams()
        connect(engine, B, "net2", NET2, "10.92.0.3")
        connect(engine, A, "net2", NET2, "10.92.0.2")
        await asyncio.sleep(0.1)
        engine.down = False
        await until(lambda: len(holders(table, NET2, "app")) == 2, "both on net2")
        assert holders(table, NET2, "app") == [B, A]
        assert holders(table, NET1, "app") == [A, B]  # untouched by the outage


async def test_without_missed_events_the_listing_orders_by_start_time() -> None:
    """The control for the test above: the same joins seen only by a listing."""
    engine = two_containers_on_net1()
    connect(engine, B, "net2", NET2, "10.92.0.3")
    connect(engine, A, "net2", NET2, "10.92.0.2")
    async with watching(engine) as table:
        assert holders(table, NET2, "app") == [A, B]


async def test_a_stale_removal_only_asks_the_engine() -> None:
    """A `die` stamped before the listing (delivered late or twice) does not remove a
    container the engine still runs; a fresh `die` removes at once, before any inspect."""
    engine = two_containers_on_net1()
    async with watching(engine) as table:
        engine.events.append({"Type": "container", "Action": "die", "timeNano":
                              engine.clock - 5 * SECOND, "Actor": {"ID": A, "Attributes": {}}})
        engine.emit("container", "rename", B)  # a fresh event after it, to know when it is done
        await until(lambda: B in engine.inspected, "the rename applied")
        assert A in engine.inspected and table.container(A) is not None
        inspected = len(engine.inspected)
        engine.emit("container", "die", A)
        await until(lambda: table.container(A) is None, "a fresh die applied")
        assert len(engine.inspected) == inspected  # removed on the event's word


async def test_a_disconnect_wins_over_an_inspect_that_still_shows_the_endpoint() -> None:
    engine = two_containers_on_net1()
    connect(engine, A, "net2", NET2, "10.92.0.2")
    async with watching(engine) as table:
        assert holders(table, NET2, "app") == [A]
        engine.emit("network", "disconnect", NET2, container=A)  # inspect still lists net2
        await until(lambda: holders(table, NET2, "app") == [], "a left net2")
        assert holders(table, NET1, "app") == [A, B]


async def test_a_reconcile_reports_what_it_added_removed_and_changed(
        caplog: pytest.LogCaptureFixture) -> None:
    engine = two_containers_on_net1()
    with caplog.at_level(logging.INFO, logger="watchers.docker"):
        async with watching(engine) as table:
            engine.down = True
            engine.cut_streams()
            del engine.containers[B]
            endpoints = engine.containers[A]["NetworkSettings"]["Networks"]
            endpoints["net1"]["Aliases"] = ["app", "api"]
            await asyncio.sleep(0.1)
            engine.down = False
            await until(lambda: table.container(B) is None, "the reconcile")
    synced = [r.getMessage() for r in caplog.records if "running containers" in r.getMessage()]
    assert synced[0].endswith("(2 added, 0 removed, 0 changed)")
    assert synced[-1].endswith("(0 added, 1 removed, 1 changed)")
    assert engine.connections >= 2
