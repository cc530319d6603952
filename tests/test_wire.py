# Wire behaviour a client sees: the fast path and the dnspython path give the same bytes,
# truncation over UDP, EDNS (OPT back, DO echoed, BADVERS), the accept-filter ladder for
# malformed packets (docs/failures.md), and TCP framing fed whole, byte by byte and several at once.
# Arbitrary and mutated bytes: tests/test_hostile_input.py.
from __future__ import annotations

import struct
from ipaddress import ip_address

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from resolver.answer import AliasOrder, LocalAnswer, Policy, decide
from resolver.framing import TcpFramer, frame
from resolver.handler import Forward, Handler
from resolver.slowpath import ParsedSlow, parse_with_dnspython, render_with_dnspython
from resolver.table import NameTable
from testkit.topology import Topology, attach, container, network

NET = network("wirenet", "172.50.0.0/24", ipv6="fd00:50::/64")
LONG = "a" * 63
CLIENT = container("client", attach(NET, 200))
HOLDERS = [container(f"h{i:02d}", attach(NET, 10 + i, LONG, "shared")) for i in range(40)]
SOURCE = "172.50.0.200"


def handler(order: AliasOrder = AliasOrder.ORDERED) -> Handler:
    table = Topology([NET], [CLIENT, *HOLDERS]).table()
    return Handler(table, Policy(alias_order=order))


def dnspython_reply(table: NameTable, policy: Policy, data: bytes, source: str,
                    tcp: bool) -> bytes:
    """The reference: the same decision rendered by dnspython alone."""
    parsed = parse_with_dnspython(data)
    assert isinstance(parsed, ParsedSlow)
    query = parsed.query
    decision = decide(table.view_for(ip_address(source)), table.synced, query.qname,
                      query.qtype, policy)
    assert isinstance(decision, LocalAnswer)
    return render_with_dnspython(parsed, decision, query.max_size(tcp))


def ask(h: Handler, query: dns.message.Message, tcp: bool = False) -> dns.message.Message:
    out = h.handle(query.to_wire(), SOURCE, tcp)
    assert isinstance(out, bytes)
    return dns.message.from_wire(out)


QUERIES = [
    ("h01", "A", None), ("H01", "a", None), ("shared", "A", None), ("SHARED", "AAAA", None),
    ("h02", "MX", None), ("client.wirenet", "A", 0), ("h03", "A", 4096),
    ("11.0.50.172.in-addr.arpa", "PTR", None), ("11.0.50.172.IN-addr.ARPA", "PTR", 1232),
    (LONG, "A", None), (LONG, "A", 1400), ("Shared.WireNet", "AAAA", 600),
]


@pytest.mark.parametrize(("name", "rdtype", "payload"), QUERIES)
@pytest.mark.parametrize("tcp", [False, True])
def test_fast_path_is_byte_identical_to_dnspython(name: str, rdtype: str, payload: int | None,
                                                  tcp: bool) -> None:
    table = Topology([NET], [CLIENT, *HOLDERS]).table()
    policy = Policy(alias_order=AliasOrder.ORDERED)
    query = dns.message.make_query(name, rdtype, use_edns=payload is not None,
                                   payload=payload or 0, want_dnssec=payload == 4096)
    query.flags |= dns.flags.CD if payload else 0
    fast = Handler(table, policy).handle(query.to_wire(), SOURCE, tcp)
    assert isinstance(fast, bytes)
    assert fast == dnspython_reply(table, policy, query.to_wire(), SOURCE, tcp)


def test_header_is_dockers() -> None:
    query = dns.message.make_query("h01", "A")
    query.flags |= dns.flags.CD
    reply = ask(handler(), query)
    assert reply.id == query.id
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.RA and reply.flags & dns.flags.RD
    assert reply.flags & dns.flags.CD and not reply.flags & dns.flags.AA
    assert reply.question[0].name.to_text() == "h01."


def test_question_case_is_echoed() -> None:
    reply = ask(handler(), dns.message.make_query("ShArEd", "A"))
    assert reply.question[0].name.labels[0] == b"ShArEd"
    assert reply.answer[0].name.labels[0] == b"ShArEd"


def test_udp_truncates_to_512_and_sets_tc() -> None:
    out = handler().handle(dns.message.make_query(LONG, "A").to_wire(), SOURCE, False)
    assert isinstance(out, bytes) and len(out) <= 512
    reply = dns.message.from_wire(out)
    assert reply.flags & dns.flags.TC
    assert 0 < count(reply) < 40


def test_edns_size_and_tcp_get_everything() -> None:
    big = dns.message.make_query(LONG, "A", use_edns=0, payload=4096)
    reply = ask(handler(), big)
    assert not reply.flags & dns.flags.TC and count(reply) == 40
    reply = ask(handler(), dns.message.make_query(LONG, "A"), tcp=True)
    assert not reply.flags & dns.flags.TC and count(reply) == 40


def test_edns_gets_opt_back_with_do_echoed_and_options_dropped() -> None:
    unknown = dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"xyz")
    query = dns.message.make_query("h01", "A", use_edns=0, payload=4096, want_dnssec=True,
                                   options=[unknown])
    reply = ask(handler(), query)
    assert reply.edns == 0 and reply.payload == 1232
    assert reply.ednsflags & dns.flags.DO and reply.options == ()
    plain = ask(handler(), dns.message.make_query("h01", "A"))
    assert plain.edns == -1


def test_edns_version_above_zero_gets_badvers() -> None:
    reply = ask(handler(), dns.message.make_query("h01", "A", use_edns=1))
    assert reply.rcode() == dns.rcode.BADVERS and reply.edns == 0 and not reply.answer


def test_first_order_gives_one_record() -> None:
    reply = ask(handler(AliasOrder.FIRST), dns.message.make_query("shared", "A"))
    assert [rr.to_text() for rrset in reply.answer for rr in rrset] == ["172.50.0.10"]


def test_nodata_has_no_authority_and_no_forward() -> None:
    reply = ask(handler(), dns.message.make_query("h01", "TXT"))
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer and not reply.authority


def test_miss_is_forwarded_with_the_query_bytes() -> None:
    wire = dns.message.make_query("nosuch.invalid", "A").to_wire()
    out = handler().handle(wire, SOURCE, False)
    assert isinstance(out, Forward) and out.data == wire and out.query.qname == "nosuch.invalid"


def count(reply: dns.message.Message) -> int:
    return sum(len(rrset) for rrset in reply.answer)


def header(flags: int, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", 0x1234, flags, qd, an, ns, ar)


QUESTION = b"\x03h01\x00\x00\x01\x00\x01"


@pytest.mark.parametrize(("packet", "expect"), [
    pytest.param(b"", None, id="empty"),
    pytest.param(b"\x12\x34\x01", None, id="short-header"),
    pytest.param(header(0x8100) + QUESTION, None, id="qr-set-dropped"),
    pytest.param(header(2 << 11) + QUESTION, "NOTIMP", id="opcode-status"),
    pytest.param(header(5 << 11) + QUESTION, "NOTIMP", id="opcode-update"),
    pytest.param(header(0x0100, qd=2) + QUESTION * 2, "FORMERR", id="two-questions"),
    pytest.param(header(0x0100, qd=0), "FORMERR", id="no-question"),
    pytest.param(header(0x0100, ar=3) + QUESTION, "FORMERR", id="too-many-additional"),
    pytest.param(header(0x0100) + b"\x03h0", "FORMERR", id="cut-question"),
    pytest.param(header(0x0100) + b"\xc0\x0c\x00\x01\x00\x01", "FORMERR", id="pointer-loop"),
    pytest.param(header(0x0100) + b"\x3fabc", "FORMERR", id="label-past-end"),
    pytest.param(header(0x0100) + QUESTION + b"junk", "FORMERR", id="trailing-junk"),
    pytest.param(header(0x0100, ar=1) + QUESTION + b"\x00\x00\x29", "FORMERR", id="cut-opt"),
    pytest.param(header(0x0100, an=1) + QUESTION, "FORMERR", id="missing-answer"),
    pytest.param(header(4 << 11) + QUESTION, "NOERROR", id="notify-like-query"),
])
def test_malformed_ladder(packet: bytes, expect: str | None) -> None:
    out = handler().handle(packet, SOURCE, False)
    if expect is None:
        assert out is None
        return
    assert isinstance(out, bytes)
    assert out[:2] == b"\x12\x34"
    reply = dns.message.from_wire(out)
    assert dns.rcode.to_text(reply.rcode()) == expect
    if expect in ("NOTIMP", "FORMERR") and len(packet) >= 12 and struct.unpack(
            "!H", packet[4:6])[0] != 1:
        assert not reply.question and not reply.flags & dns.flags.RA


MESSAGES = [dns.message.make_query(f"h{i:02d}", "A").to_wire() for i in range(3)]
STREAM = b"".join(frame(m) for m in MESSAGES)


def test_framer_whole_stream() -> None:
    assert TcpFramer().feed(STREAM) == MESSAGES


def test_framer_byte_by_byte() -> None:
    framer = TcpFramer()
    got: list[bytes] = []
    for i in range(len(STREAM)):
        got.extend(framer.feed(STREAM[i : i + 1]))
    assert got == MESSAGES and framer.pending == 0


def test_framer_split_anywhere_with_trailing_half_frame() -> None:
    for cut in range(len(STREAM)):
        framer = TcpFramer()
        got = framer.feed(STREAM[:cut]) + framer.feed(STREAM[cut:] + b"\x00\x10abc")
        assert got == MESSAGES and framer.pending == 5


def test_rdtype_echo_for_unknown_type() -> None:
    query = dns.message.make_query("h01", dns.rdatatype.from_text("TYPE65000"))
    reply = ask(handler(), query)
    assert reply.rcode() == dns.rcode.NOERROR and reply.question[0].rdtype == 65000


# ----- the UDP reply cache: a repeated query is answered from the reply kept for its view -----

V4_ONLY = container("v4only", attach(NET, 100, v6=False))
LINKER = container("linker", attach(NET, 201, links={"lnk": "h01"}))
STRANGER_IN_SUBNET = "172.50.0.250"  # in the subnet, not an endpoint: the network view


def cache_table() -> NameTable:
    return Topology([NET], [CLIENT, LINKER, V4_ONLY, *HOLDERS]).table()


REPEATED = [
    pytest.param("ShArEd", "A", None, id="mixed-case"),
    pytest.param("V4ONLY", "AAAA", 1232, id="nodata-aaaa-edns"),
    pytest.param("v4only.WIRENET", "MX", None, id="nodata-mx"),
    pytest.param("11.0.50.172.In-Addr.Arpa", "PTR", 4096, id="ptr-edns-do"),
    pytest.param(LONG, "A", None, id="truncated"),
    pytest.param("h05", "A", 700, id="edns-payload"),
    pytest.param("lnk", "A", 0, id="link-alias"),
]


@pytest.mark.parametrize(("name", "rdtype", "payload"), REPEATED)
def test_repeated_query_is_byte_identical_to_dnspython(name: str, rdtype: str,
                                                       payload: int | None) -> None:
    table, policy = cache_table(), Policy(alias_order=AliasOrder.ORDERED)
    h = Handler(table, policy)
    for flags in (0, dns.flags.CD, 0):
        query = dns.message.make_query(name, rdtype, use_edns=payload is not None,
                                       payload=payload or 0, want_dnssec=payload == 4096)
        query.flags |= flags
        for _ in range(2):  # the second one is answered from the kept reply
            assert h.handle(query.to_wire(), "172.50.0.201", False) == dnspython_reply(
                table, policy, query.to_wire(), "172.50.0.201", False)
            query.id = (query.id + 1) % 65536


def test_repeated_query_echoes_each_clients_case() -> None:
    h = Handler(cache_table(), Policy())
    for name in ("ShArEd", "sHaReD", "ShArEd"):
        reply = ask(h, dns.message.make_query(name, "A"))
        assert reply.question[0].name.labels[0] == name.encode()


def test_kept_reply_follows_table_changes() -> None:
    table = cache_table()
    h = Handler(table, Policy())
    query = dns.message.make_query("h01", "A")
    assert [rr.to_text() for rr in ask(h, query).answer[0]] == ["172.50.0.11"]
    table.upsert_container(container("h01", attach(NET, 99)))
    assert [rr.to_text() for rr in ask(h, query).answer[0]] == ["172.50.0.99"]
    table.remove_container(container("h01").id)
    assert isinstance(h.handle(query.to_wire(), SOURCE, False), Forward)


def test_kept_reply_is_per_view() -> None:
    h = Handler(cache_table(), Policy())
    wire = dns.message.make_query("lnk", "A").to_wire()
    out = h.handle(wire, "172.50.0.201", False)
    assert isinstance(out, bytes) and dns.message.from_wire(out).answer
    assert isinstance(h.handle(wire, "172.50.0.201", False), bytes)
    assert isinstance(h.handle(wire, STRANGER_IN_SUBNET, False), Forward)  # no link aliases
    assert isinstance(h.handle(wire, SOURCE, False), Forward)  # another container


@pytest.mark.parametrize("extra", [False, True], ids=["fast-path", "dnspython-path"])
def test_shuffled_answers_are_shuffled_per_reply(extra: bool) -> None:
    h = handler(AliasOrder.SHUFFLE)
    query = dns.message.make_query("shared", "A", use_edns=0, payload=4096)
    if extra:  # a second additional record: only dnspython parses that
        query.additional.append(dns.rrset.from_text("x.", 0, "IN", "TXT", '"y"'))
    orders = {tuple(rr.to_text() for rrset in ask(h, query).answer for rr in rrset)
              for _ in range(5)}
    assert len(orders) > 1 and all(len(order) == 40 for order in orders)
