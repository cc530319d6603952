# --domain: an authoritative zone over the same views (SPEC §5). Names answer with AA=1 as
# `name.SUFFIX` and `name.network.SUFFIX`; the apex has SOA and NS; misses get NXDOMAIN with
# the SOA and never leave. Also the EDNS compliance checks a zone tester makes (ednscomp-style).
from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from resolver.answer import Policy
from resolver.handler import Forward, Handler
from tests.topology import Topology, attach, container, network

NET = network("zonenet", "172.70.0.0/24")
SOURCE = "172.70.0.100"
ZONE = "cluster.test"


def ask(query: dns.message.Message, tcp: bool = False) -> dns.message.Message:
    table = Topology([NET], [container("client", attach(NET, 100)),
                             container("web", attach(NET, 2, "app"))]).table()
    out = Handler(table, Policy(domain=ZONE)).handle(query.to_wire(), SOURCE, tcp)
    assert isinstance(out, bytes), out
    return dns.message.from_wire(out)


def rdata(reply: dns.message.Message) -> list[str]:
    return [rr.to_text() for rrset in reply.answer for rr in rrset]


@pytest.mark.parametrize("name", ["web.cluster.test", "APP.Cluster.Test",
                                  "web.zonenet.cluster.test"])
def test_zone_names_are_authoritative(name: str) -> None:
    reply = ask(dns.message.make_query(name, "A"))
    assert rdata(reply) == ["172.70.0.2"] and reply.flags & dns.flags.AA


def test_apex_soa_and_ns() -> None:
    soa = ask(dns.message.make_query(ZONE, "SOA"))
    assert soa.flags & dns.flags.AA and soa.answer[0].rdtype == dns.rdatatype.SOA
    ns = ask(dns.message.make_query(ZONE, "NS"))
    assert rdata(ns) == ["ns.cluster.test."]


def test_miss_in_zone_is_nxdomain_with_soa_never_forwarded() -> None:
    reply = ask(dns.message.make_query("nosuch.cluster.test", "A"))
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.flags & dns.flags.AA
    assert reply.authority[0].rdtype == dns.rdatatype.SOA


def test_nodata_in_zone_carries_soa() -> None:
    reply = ask(dns.message.make_query("web.cluster.test", "AAAA"))
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert reply.authority[0].rdtype == dns.rdatatype.SOA


def test_outside_zone_is_still_forwarded() -> None:
    table = Topology([NET], [container("client", attach(NET, 100))]).table()
    wire = dns.message.make_query("other.invalid", "A").to_wire()
    assert isinstance(Handler(table, Policy(domain=ZONE)).handle(wire, SOURCE, False), Forward)


# ednscomp's checks, run against the zone apex SOA.
def edns_query(version: int = 0, flags: int = 0, options: list[dns.edns.Option] | None = None,
               payload: int = 4096) -> dns.message.Message:
    query = dns.message.make_query(ZONE, "SOA", use_edns=version, ednsflags=flags,
                                   payload=payload, options=options or [])
    return query


def test_edns_plain() -> None:
    reply = ask(dns.message.make_query(ZONE, "SOA"))
    assert reply.rcode() == dns.rcode.NOERROR and reply.edns == -1 and reply.answer


def test_edns_version_zero() -> None:
    reply = ask(edns_query())
    assert reply.rcode() == dns.rcode.NOERROR and reply.edns == 0 and reply.answer


def test_edns_version_one_badvers_no_answer() -> None:
    reply = ask(edns_query(version=1))
    assert reply.rcode() == dns.rcode.BADVERS and reply.edns == 0 and not reply.answer


def test_edns_unknown_option_ignored_not_echoed() -> None:
    reply = ask(edns_query(options=[dns.edns.GenericOption(100, b"")]))
    assert reply.rcode() == dns.rcode.NOERROR and reply.options == () and reply.answer


def test_edns_unknown_flag_ignored_not_echoed() -> None:
    reply = ask(edns_query(flags=0x4000))
    assert reply.rcode() == dns.rcode.NOERROR and reply.ednsflags & 0x4000 == 0


def test_edns_do_echoed() -> None:
    reply = ask(edns_query(flags=dns.flags.DO))
    assert reply.ednsflags & dns.flags.DO


def test_edns_512_payload_fits() -> None:
    reply = ask(edns_query(payload=512))
    assert reply.rcode() == dns.rcode.NOERROR and not reply.flags & dns.flags.TC


def test_edns_over_tcp_gets_opt() -> None:
    reply = ask(edns_query(), tcp=True)
    assert reply.edns == 0


def test_header_z_bit_is_zero_in_replies() -> None:
    query = dns.message.make_query(ZONE, "SOA")
    query.flags |= 0x0040
    assert ask(query).flags & 0x0040 == 0
