# The heap after a full load (resolver/heap.py, docs/performance.md): the table's objects are
# frozen out of the collector's walks, a table swap after a freeze answers the new state and
# only it, cyclic garbage frozen at one load is collected at the next, single changes are left
# alone, and in the event loop the work waits until the loader's step is over (once per burst).
from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from ipaddress import ip_address

import pytest

from resolver.answer import LocalAnswer, Policy, decide
from resolver.heap import HeapSettler
from resolver.model import ContainerInfo, EngineState
from resolver.table import NameTable
from testkit.topology import attach, container, network

NET = network("app", "172.50.0.0/24")
CLIENT = container("client", attach(NET, 100))
WEB = container("web", attach(NET, 2, "www"))
DB = container("db", attach(NET, 3, "store"))


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    """Leave the test process's collector as it was: nothing frozen."""
    yield
    gc.unfreeze()


def state(*containers: ContainerInfo) -> EngineState:
    return EngineState((NET,), (CLIENT, *containers))


def answer(table: NameTable, name: str) -> tuple[int, list[str]]:
    view = table.view_for(ip_address("172.50.0.100"))
    found = decide(view, table.synced, name, 1, Policy(forwarding=False))
    assert isinstance(found, LocalAnswer)
    return found.rcode, [record.rdata.to_text() for record in found.records]


def test_a_full_load_freezes_the_table_and_a_swap_answers_the_new_state() -> None:
    table = NameTable()
    settler = HeapSettler(table)
    table.replace_all(state(WEB))
    assert settler.settled == 1
    assert gc.get_freeze_count() > 0
    frozen = set(map(id, gc.get_objects()))
    assert id(table.snapshot.records[NET.id]) not in frozen  # frozen objects are not walked
    assert answer(table, "www") == (0, ["172.50.0.2"])
    table.replace_all(state(DB))
    assert settler.settled == 2
    assert answer(table, "store") == (0, ["172.50.0.3"])
    assert answer(table, "www")[0] == 3  # NXDOMAIN: the swapped-out container is gone
    assert answer(table, "web")[0] == 3


def test_single_changes_leave_the_heap_alone() -> None:
    table = NameTable()
    settler = HeapSettler(table)
    table.replace_all(state(WEB))
    table.upsert_container(DB)
    table.remove_container(WEB.id)
    assert settler.settled == 1
    assert answer(table, "store") == (0, ["172.50.0.3"])
    assert answer(table, "www")[0] == 3


class Node:
    def __init__(self) -> None:
        self.other: Node = self


def test_cyclic_garbage_frozen_at_one_load_is_collected_at_the_next() -> None:
    table = NameTable()
    HeapSettler(table)
    cycle = Node()
    alive = weakref.ref(cycle)
    table.replace_all(state(WEB))  # frozen while still referenced
    del cycle
    gc.collect()
    assert alive() is not None  # frozen: no collection reaches it
    table.replace_all(state(WEB))
    assert alive() is None


async def test_in_the_loop_a_burst_of_loads_settles_once_after_the_step() -> None:
    table = NameTable()
    settler = HeapSettler(table)
    table.replace_all(state(WEB))
    table.replace_all(state(DB))
    assert settler.settled == 0  # the loader's temporaries are still alive: not yet
    await asyncio.sleep(0)
    assert settler.settled == 1
    assert gc.get_freeze_count() > 0
    assert answer(table, "store") == (0, ["172.50.0.3"])
