# Registration order (docs/order.md) and table lifecycle: holders of a shared name answer in the
# order they joined; stop, disconnect, rename and network removal take effect at once; a
# full resync keeps the order of what persisted; a fresh table rebuilds it deterministically.
from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address

from resolver.answer import AliasOrder, LocalAnswer, Policy, decide
from resolver.model import ContainerInfo, EngineState
from resolver.table import NameTable
from testkit.topology import Topology, attach, container, network

NET = network("appnet", "172.40.0.0/24")
OTHER = network("other", "172.41.0.0/24")
CLIENT = container("client", attach(NET, 100), attach(OTHER, 100))


def holders(table: NameTable, name: str = "app", order: AliasOrder = AliasOrder.ORDERED
            ) -> list[str]:
    view = table.view_for(ip_address("172.40.0.100"))
    answer = decide(view, table.synced, name, 1, Policy(alias_order=order))
    assert isinstance(answer, LocalAnswer), answer
    return [r.rdata.to_text() for r in answer.records]


def fresh(*containers: ContainerInfo) -> NameTable:
    return Topology([NET, OTHER], [CLIENT, *containers]).table()


A = container("a", attach(NET, 2, "app"), started="2026-01-01T00:00:01Z")
B = container("b", attach(NET, 3, "app"), started="2026-01-01T00:00:02Z")
C = container("c", attach(NET, 4, "app"), started="2026-01-01T00:00:03Z")


def test_first_registered_answers_and_next_takes_over() -> None:
    table = fresh(A, B, C)
    assert holders(table, order=AliasOrder.FIRST) == ["172.40.0.2"]
    table.remove_container(A.id)
    assert holders(table, order=AliasOrder.FIRST) == ["172.40.0.3"]


def test_restarted_holder_joins_at_the_end() -> None:
    table = fresh(A, B, C)
    table.remove_container(A.id)
    table.upsert_container(A)
    assert holders(table) == ["172.40.0.3", "172.40.0.4", "172.40.0.2"]


def test_disconnect_and_reconnect_moves_to_the_end() -> None:
    table = fresh(A, B, C)
    table.upsert_container(replace(B, endpoints=()))
    assert holders(table) == ["172.40.0.2", "172.40.0.4"]
    table.upsert_container(B)
    assert holders(table) == ["172.40.0.2", "172.40.0.4", "172.40.0.3"]


def test_connecting_another_network_keeps_the_place() -> None:
    table = fresh(A, B)
    table.upsert_container(replace(A, endpoints=(*A.endpoints, attach(OTHER, 2))))
    assert holders(table) == ["172.40.0.2", "172.40.0.3"]


def test_alias_added_on_reconnect_joins_at_the_end_of_that_name_only() -> None:
    table = fresh(A, B)
    d = container("d", attach(NET, 5, "db"))
    table.upsert_container(d)
    table.upsert_container(replace(d, endpoints=(attach(NET, 5, "db", "app"),)))
    assert holders(table) == ["172.40.0.2", "172.40.0.3", "172.40.0.5"]
    assert holders(table, "db") == ["172.40.0.5"]


def test_order_is_rebuilt_from_start_time_after_restart() -> None:
    table = fresh(C, B, A)  # listed in any order: start time decides
    assert holders(table) == ["172.40.0.2", "172.40.0.3", "172.40.0.4"]


def test_resync_keeps_the_order_of_what_persisted() -> None:
    table = fresh(A, B)
    table.remove_container(A.id)
    table.upsert_container(A)  # now b, a
    table.replace_all(EngineState((NET, OTHER), (CLIENT, A, B, C)))
    assert holders(table) == ["172.40.0.3", "172.40.0.2", "172.40.0.4"]


def test_resync_moves_a_container_that_restarted_unseen_to_the_end() -> None:
    table = fresh(A, B)
    restarted = replace(A, started_at="2026-01-01T00:10:00Z")
    table.replace_all(EngineState((NET, OTHER), (CLIENT, restarted, B)))
    assert holders(table) == ["172.40.0.3", "172.40.0.2"]


def test_resync_drops_what_vanished() -> None:
    table = fresh(A, B)
    table.replace_all(EngineState((NET, OTHER), (CLIENT, B)))
    assert holders(table) == ["172.40.0.3"]
    assert table.container(A.id) is None


def test_rename_moves_name_and_ptr() -> None:
    table = fresh(A)
    renamed = replace(A, name="a2")
    table.upsert_container(renamed)
    view = table.view_for(ip_address("172.40.0.100"))
    assert not isinstance(decide(view, True, "a", 1, Policy()), LocalAnswer)
    assert holders(table, "a2") == ["172.40.0.2"]
    ptr = decide(view, True, "2.0.40.172.in-addr.arpa", 12, Policy())
    assert isinstance(ptr, LocalAnswer)
    assert ptr.records[0].rdata.to_text() == "a2.appnet."


def test_restart_with_new_address() -> None:
    table = fresh(A)
    table.remove_container(A.id)
    table.upsert_container(replace(A, endpoints=(attach(NET, 20, "app"),)))
    assert holders(table) == ["172.40.0.20"]


def test_network_removed_takes_its_names() -> None:
    table = fresh(A)
    table.remove_network(NET.id)
    assert table.records(NET.id) is None
    view = table.view_for(ip_address("172.41.0.100"))
    assert not isinstance(decide(view, True, "a", 1, Policy()), LocalAnswer)


def test_every_change_notifies_listeners_once() -> None:
    """Once per change, none for a change that changes nothing, and after the change: a
    listener (an answer cache) sees the table as it now is."""
    table = fresh(A)
    seen: list[bool] = []  # whether B was in the table at each call
    table.on_change(lambda: seen.append(table.container(B.id) is not None))
    table.upsert_container(B)
    table.remove_container(B.id)
    table.remove_container("nonexistent")
    assert seen == [True, False]
