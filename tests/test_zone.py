# --domain: an authoritative zone over the same views (docs/answers.md). Names answer with AA=1 as
# `name.SUFFIX` and `name.network.SUFFIX`; the apex has SOA and NS; misses get NXDOMAIN with
# the SOA and never leave. Also the EDNS compliance checks a zone tester makes (ednscomp-style),
# as one table.
from __future__ import annotations

from dataclasses import dataclass

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from resolver.answer import Policy
from resolver.handler import Forward, Handler
from testkit.topology import Topology, attach, container, network

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


# ednscomp's checks (the EDNS compliance tester), run against the zone apex SOA: one row each.
Z_BIT = 0x0040  # the reserved header bit: must be zero in replies
UNKNOWN_EDNS_FLAG = 0x4000  # an OPT flag bit no RFC assigns: ignored, never echoed
# An option code nobody uses: ignored, never echoed.
UNKNOWN_OPTION = dns.edns.GenericOption(dns.edns.OptionType.make(100), b"")


@dataclass(frozen=True)
class EdnsCheck:
    """The query (EDNS version, None for no OPT; OPT flags, options and payload; extra header
    flags; transport) and what the reply must carry: rcode, whether the SOA is answered
    (with AA), the OPT's version (None: no OPT) and its flag bits. Every reply must also echo
    no option, advertise our payload size, fit (no TC) and keep the Z bit clear."""

    version: int | None = 0
    edns_flags: int = 0
    options: tuple[dns.edns.Option, ...] = ()
    payload: int = 4096
    header_flags: int = 0
    tcp: bool = False
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    answered: bool = True
    opt_version: int | None = 0
    opt_flags: int = 0


EDNS_CHECKS = [
    pytest.param(EdnsCheck(version=None, opt_version=None), id="plain"),
    pytest.param(EdnsCheck(), id="edns0"),
    pytest.param(EdnsCheck(version=1, rcode=dns.rcode.BADVERS, answered=False), id="edns1"),
    pytest.param(EdnsCheck(options=(UNKNOWN_OPTION,)), id="unknown-option-ignored"),
    pytest.param(EdnsCheck(edns_flags=UNKNOWN_EDNS_FLAG), id="unknown-flag-not-echoed"),
    pytest.param(EdnsCheck(edns_flags=dns.flags.DO, opt_flags=dns.flags.DO), id="do-echoed"),
    pytest.param(EdnsCheck(edns_flags=dns.flags.DO | UNKNOWN_EDNS_FLAG, options=(UNKNOWN_OPTION,),
                           opt_flags=dns.flags.DO), id="do-unknown-flag-and-option"),
    pytest.param(EdnsCheck(version=1, options=(UNKNOWN_OPTION,), rcode=dns.rcode.BADVERS,
                           answered=False), id="edns1-unknown-option"),
    pytest.param(EdnsCheck(payload=512), id="payload-512-fits"),
    pytest.param(EdnsCheck(tcp=True), id="edns-over-tcp"),
    pytest.param(EdnsCheck(version=None, header_flags=Z_BIT, opt_version=None), id="z-bit"),
    pytest.param(EdnsCheck(header_flags=Z_BIT), id="z-bit-edns0"),
]


@pytest.mark.parametrize("check", EDNS_CHECKS)
def test_edns_compliance(check: EdnsCheck) -> None:
    version = -1 if check.version is None else check.version
    query = dns.message.make_query(ZONE, "SOA")
    # use_edns, not make_query's arguments: dnspython before 2.6 drops ednsflags there.
    query.use_edns(version, check.edns_flags, check.payload, options=list(check.options))
    query.flags |= check.header_flags
    reply = ask(query, tcp=check.tcp)
    assert reply.rcode() == check.rcode
    assert bool(reply.answer) == check.answered == bool(reply.flags & dns.flags.AA)
    if check.answered:
        assert reply.answer[0].rdtype == dns.rdatatype.SOA
    assert reply.edns == (-1 if check.opt_version is None else check.opt_version)
    if check.opt_version is not None:
        assert reply.ednsflags & 0xFFFF == check.opt_flags  # above: the extended rcode
        assert reply.payload == 1232 and reply.options == ()
    assert not reply.flags & (dns.flags.TC | Z_BIT)
