# Views on a big engine (docs/views.md, docs/performance.md): the host view of many networks is
# looked up through an index and a client address is matched to its network through the
# subnets by prefix; both must answer exactly as Docker's walk over the networks in endpoint
# order. (tests/test_isolation_property.py runs its histories with every view indexed too.)
from __future__ import annotations

from ipaddress import ip_address

from resolver.answer import LocalAnswer, Policy, decide
from resolver.table import NameTable
from resolver.views import SMALL_VIEW
from testkit.topology import Topology, attach, container, network

HOST = ip_address("127.0.0.1")
MANY = SMALL_VIEW * 2 + 1


def answer(topology: Topology, source: str, name: str, qtype: int = 1) -> tuple[int, list[str]]:
    table = topology.table()
    found = decide(table.view_for(ip_address(source)), table.synced, name, qtype,
                   Policy(forwarding=False))
    assert isinstance(found, LocalAnswer)
    return found.rcode, [record.rdata.to_text() for record in found.records]


def view_key(table: NameTable, source: str) -> str | None:
    view = table.view_for(ip_address(source))
    return None if view is None else view.key


def many_networks() -> Topology:
    """MANY networks n00, n01, ...: `solo-i` on network i with the alias `shared` (held on
    every network), `other` on n05, and `linker`, on n05 and every later network, declaring
    on n05 the link alias `shared` for `other`."""
    nets = [network(f"n{i:02d}", f"10.{60 + i}.0.0/24") for i in range(MANY)]
    solos = [container(f"solo-{i}", attach(net, 10, "shared")) for i, net in enumerate(nets)]
    linker = container("linker", attach(nets[5], 99, links={"shared": "other"}),
                       *(attach(net, 99) for net in nets[6:]))
    return Topology(nets, [*solos, container("other", attach(nets[5], 20)), linker])


def test_the_host_view_of_many_networks_answers_as_the_walk() -> None:
    topology = many_networks()
    assert answer(topology, "127.0.0.1", "shared") == (0, ["10.60.0.10"])  # first network
    assert answer(topology, "127.0.0.1", "shared.n17") == (0, ["10.77.0.10"])
    assert answer(topology, "127.0.0.1", f"solo-{MANY - 1}") == (0, [f"10.{59 + MANY}.0.10"])
    assert answer(topology, "127.0.0.1", "solo-3.n04")[0] == 3  # held, but not on n04
    assert answer(topology, "127.0.0.1", "nosuch")[0] == 3
    assert answer(topology, "127.0.0.1", "10.0.77.10.in-addr.arpa", 12) == (
        0, ["solo-17.n17."])


def test_a_container_on_many_networks_keeps_its_link_aliases_first() -> None:
    topology = many_networks()
    view = topology.table().view_for(ip_address("10.65.0.99"))
    assert view is not None and view.index is not None
    # n05 comes first in linker's view: its link alias wins over `shared` held there.
    assert answer(topology, "10.65.0.99", "shared") == (0, ["10.65.0.20"])
    assert answer(topology, "10.65.0.99", "solo-0")[0] == 3  # n00 is not in its view
    assert answer(topology, "10.65.0.99", "shared.n09") == (0, ["10.69.0.10"])


def test_an_address_in_nested_subnets_gets_the_first_network_in_endpoint_order() -> None:
    wide = network("wide", "10.90.0.0/16", internal=True)  # internal: last in endpoint order
    narrow = network("narrow", "10.90.7.0/24")
    dual = network("dual", "10.91.0.0/24", ipv6="fd00:91::/64")
    topology = Topology([wide, narrow, dual], [
        container("w", attach(wide, 5)), container("n", attach(narrow, 5)),
        container("d", attach(dual, 5))])
    table = topology.table()
    assert view_key(table, "10.90.7.200") == f"n:{narrow.id}"
    assert view_key(table, "10.90.8.200") == f"n:{wide.id}"
    assert view_key(table, "fd00:91::200") == f"n:{dual.id}"
    assert view_key(table, "10.92.0.1") is None  # a stranger: REFUSED
    assert view_key(table, "127.0.0.1") == "h"


def test_networks_created_and_removed_move_their_subnets() -> None:
    first = network("first", "10.93.0.0/24")
    later = network("later", "10.94.0.0/24")
    table = Topology([first], [container("a", attach(first, 5))]).table()
    assert view_key(table, "10.94.0.200") is None
    table.upsert_network(later)
    assert view_key(table, "10.94.0.200") == f"n:{later.id}"
    table.remove_network(first.id)
    assert view_key(table, "10.93.0.200") is None
    host = table.view_for(HOST)
    assert host is not None
    assert [entry.records.network.name for entry in host.entries] == ["later"]
