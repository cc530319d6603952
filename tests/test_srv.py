# SRV records without sockets (docs/srv.md): `_<service>._<proto>.<name>` by exposed port number
# or label-declared name, one record per holder offering it in registration order with health
# applied, priorities per alias order, targets that resolve to exactly that holder, addresses as
# additional data (dropped, not TC, when they do not fit), NXDOMAIN/NODATA never forwarded,
# the zone; and services read from inspect JSON.
from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from resolver.answer import FORWARD, AliasOrder, LocalAnswer, Policy, decide
from resolver.handler import Handler
from resolver.model import ServicePort
from resolver.table import NameTable
from testkit.topology import Topology, attach, container, network
from tests.test_wire import dnspython_reply
from watchers.discovery import services_from_inspect

NET = network("svcnet", "172.60.0.0/24", ipv6="fd00:60::/64")
OTHER = network("other", "172.61.0.0/24")
ZONE = "zone.test"
WEB = (ServicePort("8080", "tcp", 8080), ServicePort("http", "tcp", 80),
       ServicePort("53", "udp", 53))
API1 = replace(container("api1", attach(NET, 2, "api"), started="1"), services=WEB)
API2 = replace(container("api2", attach(NET, 3, "api"), started="2"),
               services=(ServicePort("8080", "tcp", 8080),))
API3 = container("api3", attach(NET, 4, "api"), started="3")  # offers nothing
LONE = replace(container("lone", attach(OTHER, 2)), services=WEB)
CLIENT = container("client", attach(NET, 100), started="9")
SOURCE = "172.60.0.100"


def table(*extra: Any, unready: tuple[str, ...] = ()) -> NameTable:
    containers = [replace(c, ready=c.name not in unready)
                  for c in (API1, API2, API3, CLIENT, LONE, *extra)]
    return Topology([NET, OTHER], containers).table()


def ask(t: NameTable, qname: str, qtype: str = "SRV", policy: Policy | None = None,
        source: str = SOURCE) -> str | tuple[str, ...]:
    decision = decide(t.view_for(ip_address(source)), True, qname,
                      dns.rdatatype.from_text(qtype), policy or Policy(domain=ZONE))
    if decision is FORWARD:
        return "FORWARD"
    assert isinstance(decision, LocalAnswer)
    if decision.rcode != dns.rcode.NOERROR:
        return dns.rcode.to_text(dns.rcode.Rcode.make(decision.rcode))
    return tuple(r.rdata.to_text() for r in decision.records) or "NODATA"


BOTH = ("0 0 8080 api1.svcnet.", "1 0 8080 api2.svcnet.")
CASES = [
    ("_8080._tcp.api", BOTH),
    ("_8080._tcp.api.svcnet", BOTH),
    ("_8080._TCP.API", BOTH),
    ("_http._tcp.api", ("0 0 80 api1.svcnet.",)),
    ("_53._udp.api", ("0 0 53 api1.svcnet.",)),
    ("_8080._udp.api", "NXDOMAIN"),
    ("_9999._tcp.api", "NXDOMAIN"),
    ("_http._udp.api", "NXDOMAIN"),
    ("_8080._tcp.api3", "NXDOMAIN"),
    ("_tcp.api", "NODATA"),
    ("_udp.api1", "NODATA"),
    ("_8080._tcp.nosuch", "FORWARD"),
    ("_8080._tcp.lone", "FORWARD"),  # on a network the client is not on
    ("_8080._sctp.api", "FORWARD"),  # not a protocol label: an ordinary (non-local) name
    (f"_8080._tcp.api.{ZONE}",
     ("0 0 8080 api1.svcnet.zone.test.", "1 0 8080 api2.svcnet.zone.test.")),
    (f"_9999._tcp.api.{ZONE}", "NXDOMAIN"),
    (f"_tcp.api.{ZONE}", "NODATA"),
    (f"_8080._tcp.nosuch.{ZONE}", "NXDOMAIN"),
]


@pytest.mark.parametrize(("qname", "expected"), CASES)
def test_srv_answers(qname: str, expected: str | tuple[str, ...]) -> None:
    assert ask(table(), qname.lower()) == expected


@pytest.mark.parametrize("qtype", ["A", "AAAA", "TXT", "ANY"])
def test_other_types_at_a_service_name_get_nodata(qtype: str) -> None:
    assert ask(table(), "_8080._tcp.api", qtype) == "NODATA"
    assert ask(table(), "_tcp.api", qtype) == "NODATA"


def test_priorities_per_alias_order() -> None:
    ordered = Policy(alias_order=AliasOrder.ORDERED)
    assert ask(table(), "_8080._tcp.api", policy=ordered) == BOTH
    shuffled = ask(table(), "_8080._tcp.api", policy=Policy(alias_order=AliasOrder.SHUFFLE))
    assert sorted(shuffled) == ["0 1 8080 api1.svcnet.", "0 1 8080 api2.svcnet."]


def test_health_rules_apply_among_offering_holders() -> None:
    assert ask(table(unready=("api1",)), "_8080._tcp.api") == ("0 0 8080 api2.svcnet.",)
    assert ask(table(unready=("api1", "api2")), "_8080._tcp.api") == BOTH  # fail open
    # api3 is ready but offers nothing: it does not make api1 "not the only one"
    assert ask(table(unready=("api1",)), "_http._tcp.api") == ("0 0 80 api1.svcnet.",)
    assert ask(table(unready=("api1",)), "_8080._tcp.api",
               policy=Policy(health=False)) == BOTH


def test_a_target_that_would_find_another_holder_is_left_out() -> None:
    # api2's name is also another container's alias on the same network: `api2.svcnet` would
    # answer both, so api2 cannot be a target.
    shadow = container("shadow", attach(NET, 9, "api2"), started="0")
    assert ask(table(shadow), "_8080._tcp.api") == ("0 0 8080 api1.svcnet.",)


def test_target_resolves_to_exactly_that_holder() -> None:
    t = table()
    for record in ask(t, "_8080._tcp.api"):
        target = record.split()[-1].rstrip(".")
        holder = ask(t, target, "A")
        assert len(holder) == 1 and holder[0] in ("172.60.0.2", "172.60.0.3")


# ----- on the wire ----------------------------------------------------------------------------


def wire(t: NameTable, policy: Policy, qname: str, tcp: bool = False,
         payload: int | None = None) -> tuple[bytes, dns.message.Message]:
    query = dns.message.make_query(qname, "SRV", use_edns=payload is not None,
                                   payload=payload or 0)
    out = Handler(t, policy).handle(query.to_wire(), SOURCE, tcp)
    assert isinstance(out, bytes)
    assert out == dnspython_reply(t, policy, query.to_wire(), SOURCE, tcp)  # same bytes
    return out, dns.message.from_wire(out)


def test_srv_targets_are_never_compressed() -> None:
    """RFC 2782: no name compression in the target field (dnspython before 2.9 compressed it,
    hence our lower bound): each target is written out in full in its record's rdata."""
    out, reply = wire(table(), Policy(alias_order=AliasOrder.ORDERED), "_8080._tcp.api")
    targets = [rd.target for rrset in reply.answer for rd in rrset]
    assert len(targets) == 2
    for target in targets:
        assert target.to_wire() in out  # the full labels, no pointer into the question


def test_additional_section_carries_the_targets_addresses() -> None:
    _, reply = wire(table(), Policy(), "_8080._tcp.api")
    extra = sorted((rrset.name.to_text(), rd.to_text())
                   for rrset in reply.additional for rd in rrset)
    assert extra == [("api1.svcnet.", "172.60.0.2"), ("api1.svcnet.", "fd00:60::2"),
                     ("api2.svcnet.", "172.60.0.3"), ("api2.svcnet.", "fd00:60::3")]


def many_holders() -> NameTable:
    long = "x" * 28
    holders = [replace(container(f"{long}{i:02d}", attach(NET, 10 + i, "big"), started=f"{i:02d}"),
                       services=(ServicePort("8080", "tcp", 8080),)) for i in range(30)]
    return Topology([NET], [*holders, CLIENT]).table()


def test_big_answer_truncates_over_udp_and_is_whole_over_tcp() -> None:
    h = (many_holders(), Policy(alias_order=AliasOrder.ORDERED))
    out, reply = wire(*h, "_8080._tcp.big")
    assert reply.flags & dns.flags.TC and len(out) <= 512 and not reply.additional
    _, whole = wire(*h, "_8080._tcp.big", tcp=True)
    assert not whole.flags & dns.flags.TC
    assert sum(len(r) for r in whole.answer) == 30 and sum(len(r) for r in whole.additional) == 60


def test_additional_records_are_dropped_without_tc_when_answers_fit() -> None:
    _, reply = wire(many_holders(), Policy(alias_order=AliasOrder.ORDERED), "_8080._tcp.big",
                    payload=3000)
    answers = sum(len(r) for r in reply.answer)
    assert answers == 30 and not reply.flags & dns.flags.TC
    assert 0 < sum(len(r) for r in reply.additional) < 60


def test_nxdomain_and_nodata_on_both_paths() -> None:
    _, reply = wire(table(), Policy(), "_9999._tcp.api")
    assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer
    _, reply = wire(table(), Policy(), "_tcp.api")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer


# ----- services from inspect -------------------------------------------------------------------


def test_services_from_inspect() -> None:
    data = {
        "Config": {"ExposedPorts": {"8080/tcp": {}, "53/udp": {}, "9/sctp": {}},
                   "Labels": {"scopedns.srv.HTTP": "80", "scopedns.srv.dns": "53/udp",
                              "scopedns.srv.8080": "9000", "other": "x"}},
        "NetworkSettings": {"Ports": {"443/tcp": [{"HostPort": "8443"}], "8080/tcp": None}},
        "HostConfig": {"PortBindings": {"5000/tcp": [{"HostPort": "5000"}]}},
    }
    assert services_from_inspect(data, "c") == (
        ServicePort("8080", "tcp", 8080), ServicePort("53", "udp", 53),
        ServicePort("443", "tcp", 443), ServicePort("5000", "tcp", 5000),
        ServicePort("http", "tcp", 80), ServicePort("dns", "udp", 53))


@pytest.mark.parametrize("label", ["scopedns.srv.web=abc", "scopedns.srv.web=70000",
                                   "scopedns.srv.web=80/sctp", "scopedns.srv.=80",
                                   "scopedns.srv.a.b=80", "scopedns.srv.-x=80"])
def test_bad_service_label_is_skipped_with_a_warning(label: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    key, _, value = label.partition("=")
    data = {"Config": {"Labels": {key: value, "scopedns.srv.ok": "81"}}}
    assert services_from_inspect(data, "c1") == (ServicePort("ok", "tcp", 81),)
    assert any("c1" in r.message and key in r.message for r in caplog.records)
