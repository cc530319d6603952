# `explain` as a pure function over the table (resolver/explain.py): which view an address gets
# and why, and for a name, which network and holder answer, in which registration order, and why
# the others do not. No sockets. The predicted answer is checked against the packet path's own
# handler for every client and name of a topology.
from __future__ import annotations

from ipaddress import ip_address

import dns.message
import pytest

from resolver.answer import AliasOrder, Policy
from resolver.explain import StoppedContainer, explain, render_text, trace
from resolver.handler import Handler
from resolver.views import resolve_name
from testkit.topology import Topology, attach, container, network

APP = network("app", "10.1.0.0/24")
DB = network("db", "10.2.0.0/24", internal=True)
OTHER = network("other", "10.3.0.0/24")
BRIDGE = network("bridge", "172.17.0.0/16", user_defined=False)

FIRST = container("first", attach(APP, 2, "shared"), started="1")
SECOND = container("second", attach(APP, 3, "shared"), started="2")
STORE = container("store", attach(DB, 2, "shared"), started="3")
FAR = container("far", attach(OTHER, 2, "shared"), started="4")
CLIENT = container("client", attach(BRIDGE, 9), attach(DB, 9),
                   attach(APP, 9, links={"lnk": "second"}), started="5")
TOPOLOGY = Topology([APP, DB, OTHER, BRIDGE], [FIRST, SECOND, STORE, FAR, CLIENT])


def test_a_container_view_lists_networks_in_docker_order_with_link_aliases() -> None:
    result = explain(TOPOLOGY.table(), Policy(), ip_address("10.1.0.9"))
    assert result["view"] == "container" and result["container"]["name"] == "client"
    # internal networks last, whatever the endpoint order was
    assert [n["name"] for n in result["networks"]] == ["app", "db"]
    assert result["networks"][0]["link_aliases"] == {"lnk": "second"}
    assert result["left_out"][0]["network"] == "bridge"
    assert "internal networks last" in result["order"]


def test_network_host_and_refused_views_say_why() -> None:
    table = TOPOLOGY.table()
    assert explain(table, Policy(), ip_address("10.3.0.77"))["view"] == "network"
    host = explain(table, Policy(), ip_address("127.0.0.1"))
    assert host["view"] == "host" and {n["name"] for n in host["networks"]} == {"app", "db",
                                                                                "other"}
    stranger = explain(table, Policy(), ip_address("192.0.2.1"))
    assert stranger["view"] == "refused" and "REFUSED" in stranger["why"]


def test_shared_alias_first_holder_answers_and_the_rest_say_why() -> None:
    stopped = [StoppedContainer("f" * 64, "gone", (("app", ("gone", "shared")),))]
    result = explain(TOPOLOGY.table(), Policy(), ip_address("10.1.0.9"), "Shared.", stopped)
    name = result["name"]
    assert name["answer"]["A"] == {"rcode": "NOERROR", "records": ["10.1.0.2"],
                                   "shuffled": False}
    assert name["network"] == "app"
    assert [(h["container"], h["answers"]) for h in name["holders"]] == [
        ("first", True), ("second", False)]
    assert "registered after" in name["holders"][1]["why"]
    others = {o["network"]: o["why"] for o in name["others"]}
    assert "comes after app" in others["db"]
    assert "not on network other" in others["other"]
    assert name["stopped"][0]["container"] == "gone" and "holds no name" in name["stopped"][0][
        "why"]
    text = render_text(result)
    assert "1. first 10.1.0.2: answers" in text and "gone" in text


def test_after_the_first_holder_stops_the_next_answers() -> None:
    table = TOPOLOGY.table()
    table.remove_container(FIRST.id)
    name = explain(table, Policy(), ip_address("10.1.0.9"), "shared")["name"]
    assert [(h["container"], h["answers"]) for h in name["holders"]] == [("second", True)]
    assert name["answer"]["A"]["records"] == ["10.1.0.3"]


def test_link_alias_is_explained_as_such() -> None:
    name = explain(TOPOLOGY.table(), Policy(), ip_address("10.1.0.9"), "lnk")["name"]
    assert name["found"] == "link alias lnk -> second on network app"
    assert name["answer"]["A"]["records"] == ["10.1.0.3"]


def test_ordered_policy_marks_every_holder_answering() -> None:
    policy = Policy(alias_order=AliasOrder.ORDERED)
    name = explain(TOPOLOGY.table(), policy, ip_address("10.1.0.9"), "shared")["name"]
    assert [h["answers"] for h in name["holders"]] == [True, True]


def test_unknown_name_is_forwarded_and_has_no_holder() -> None:
    name = explain(TOPOLOGY.table(), Policy(), ip_address("10.1.0.9"), "x.invalid")["name"]
    assert name["found"] is None and name["answer"]["A"]["rcode"] == "forwarded upstream"


def test_health_hook_gives_the_reason_a_holder_is_held_back() -> None:
    result = explain(TOPOLOGY.table(), Policy(), ip_address("10.1.0.9"), "shared",
                     held_back=lambda cid: "unhealthy" if cid == SECOND.id else None)
    assert result["name"]["holders"][1]["why"] == "unhealthy"


CLIENT_ADDRESSES = ["10.1.0.9", "10.1.0.2", "10.2.0.2", "10.3.0.2", "10.3.0.50", "127.0.0.1"]
NAMES = ["shared", "lnk", "first", "second.app", "store", "far", "shared.db", "client",
         "nothing.invalid"]


@pytest.mark.parametrize("order", list(AliasOrder))
def test_prediction_is_the_packet_paths_answer(order: AliasOrder) -> None:
    """For every client and name: trace() finds what resolve_name() finds, and the predicted
    A records are those the handler puts on the wire."""
    table = TOPOLOGY.table()
    policy = Policy(alias_order=order)
    handler = Handler(table, policy)
    for source in CLIENT_ADDRESSES:
        view = table.view_for(ip_address(source))
        assert view is not None
        for qname in NAMES:
            found = trace(view, qname)
            expected = resolve_name(view, qname)
            assert (found.entry.records.holders[found.target] if found else None) == expected
            predicted = explain(table, policy, ip_address(source), qname)["name"]["answer"]["A"]
            wire = handler.handle(dns.message.make_query(qname, "A").to_wire(), source, False)
            if predicted["rcode"] == "forwarded upstream":
                assert not isinstance(wire, bytes)
                continue
            assert isinstance(wire, bytes)
            reply = dns.message.from_wire(wire)
            got = sorted(rr.to_text() for rrset in reply.answer for rr in rrset)
            assert got == sorted(predicted["records"]), (source, qname)


def test_a_stopped_container_from_its_inspect_holds_its_names_per_network() -> None:
    from watchers.stopped import stopped_from_inspect

    data = {"Id": "ab" * 32, "Name": "/old", "State": {"Running": False, "Status": "exited"},
            "Config": {"Hostname": "oldhost"},
            "NetworkSettings": {"Networks": {"app": {"Aliases": ["shared", "abababababab"]},
                                             "db": {"Aliases": None}}}}
    found = stopped_from_inspect(data)
    assert found == StoppedContainer("ab" * 32, "old", (
        ("app", ("old", "shared", "abababababab", "oldhost")),
        ("db", ("old", "abababababab", "oldhost"))), "exited")
    assert stopped_from_inspect({**data, "State": {"Running": True}}) is None
    result = explain(TOPOLOGY.table(), Policy(), ip_address("10.1.0.9"), "oldhost", [found])
    assert [s["networks"] for s in result["name"]["stopped"]] == [["app", "db"]]
