# Hostile input against the whole handler (docs/failures.md), with the oracle the fuzzer uses
# (tests/fuzz/oracle.py): valid queries mutated every way a packet can go wrong (bit flips,
# truncation, QDCOUNT, opcode, flags, section counts, EDNS options, compression pointers, long
# labels), over UDP and TCP, from every kind of source of a small synced table. The handler
# never raises or logs an internal error; a reply parses, carries the query's ID and echoes
# its question; silence exactly for QR=1 or a short header. tests/test_wire.py covers the
# ladder case by case; this covers the space between.
from __future__ import annotations

import struct
from collections.abc import Callable

import dns.edns
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.handler import Forward, Handler
from resolver.ratelimit import RateLimiter
from tests.fuzz.oracle import (
    SOURCES,
    build_handler,
    check_framer,
    check_outcome,
    drops,
    record_errors,
)

HANDLER = build_handler()
ERRORS = record_errors()
NAMES = ["web", "APP", "shared", "base", "db.othernet", "webhost", "web.fuzznet",
         "3.0.70.172.in-addr.arpa", "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.7.0.0.0.0"
         ".d.f.ip6.arpa", "zone.test", "web.zone.test", "nosuch.zone.test", "miss.invalid", "."]
QTYPES = [1, 28, 12, 6, 2, 15, 16, 255, 65, 41, 251, 252, 0, 65535]
sources = st.sampled_from(sorted(SOURCES.values()))
Mutation = Callable[[bytearray], bytearray]
QUICK = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


# Options dnspython parses strictly (ECS, EDE, cookie, ...) would make a "valid" query that
# dnspython itself rejects; the mutations below put any bytes there anyway.
option_codes = st.integers(0, 65535).filter(lambda code: code not in dns.edns._type_to_class)


@st.composite
def valid_queries(draw: st.DrawFn) -> bytes:
    options: list[dns.edns.Option] = list(draw(st.lists(st.builds(
        dns.edns.GenericOption, option_codes, st.binary(max_size=24)), max_size=3)))
    query = dns.message.make_query(
        draw(st.sampled_from(NAMES)), dns.rdatatype.RdataType.make(draw(st.sampled_from(QTYPES))),
        use_edns=draw(st.sampled_from([None, 0, 0, 1, 255])), payload=draw(st.integers(0, 65535)),
        want_dnssec=draw(st.booleans()), options=options)
    query.id = draw(st.integers(0, 65535))
    return query.to_wire()


def _at(data: bytearray, index: int) -> int:
    return index % len(data) if data else 0


def flip(index: int, bit: int) -> Mutation:
    def apply(data: bytearray) -> bytearray:
        if data:
            data[_at(data, index)] ^= 1 << bit
        return data
    return apply


def truncate(length: int) -> Mutation:
    return lambda data: data[:length]


def set_field(offset: int, value: int, mask: int = 0xFFFF) -> Mutation:
    """Overwrite the bits `mask` of the header's 16-bit field at `offset`."""
    def apply(data: bytearray) -> bytearray:
        if len(data) >= offset + 2:
            old = struct.unpack_from("!H", data, offset)[0]
            struct.pack_into("!H", data, offset, (old & ~mask) | (value & mask))
        return data
    return apply


def pointer_at(index: int, target: int) -> Mutation:
    """A compression pointer (maybe forward, backward, to itself) somewhere in the message."""
    def apply(data: bytearray) -> bytearray:
        where = 12 + index % max(len(data) - 11, 1)
        return data[:where] + struct.pack("!H", 0xC000 | target % 0x4000) + data[where:]
    return apply


def long_name(labels: list[bytes]) -> Mutation:
    """Replace the question name with raw labels of up to 63 bytes (total may pass 255)."""
    def apply(data: bytearray) -> bytearray:
        raw = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
        return data[:12] + raw + b"\x00\x01\x00\x01"
    return apply


def append(tail: bytes) -> Mutation:
    return lambda data: data + tail


mutations = st.one_of(
    st.builds(flip, st.integers(0, 1 << 16), st.integers(0, 7)),
    st.builds(truncate, st.integers(0, 80)),
    st.builds(set_field, st.just(4), st.integers(0, 65535)),  # QDCOUNT
    st.builds(set_field, st.sampled_from([6, 8, 10]), st.integers(0, 4)),  # AN/NS/AR counts
    st.builds(set_field, st.just(2), st.integers(0, 15).map(lambda op: op << 11),
              st.just(0x7800)),  # opcode
    st.builds(set_field, st.just(2), st.integers(0, 0x7FFF)),  # any flags, QR kept clear
    st.builds(pointer_at, st.integers(0, 300), st.integers(0, 0x3FFF)),
    st.builds(long_name, st.lists(st.binary(min_size=1, max_size=63), min_size=1, max_size=6)),
    st.builds(append, st.binary(min_size=1, max_size=40)),
)


def mutate(data: bytes, changes: list[Mutation]) -> bytes:
    buffer = bytearray(data)
    for change in changes:
        buffer = change(buffer)
    return bytes(buffer)


def ask(handler: Handler, data: bytes, source: str, tcp: bool) -> object:
    outcome = handler.handle(data, source, tcp)
    ERRORS.check()
    check_outcome(data, tcp, outcome)
    return outcome


@QUICK
@given(st.binary(max_size=700), sources, st.booleans())
def test_any_bytes_from_any_source(data: bytes, source: str, tcp: bool) -> None:
    ask(HANDLER, data, source, tcp)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_queries(), st.lists(mutations, min_size=1, max_size=4), sources, st.booleans())
def test_mutated_queries_from_any_source(query: bytes, changes: list[Mutation], source: str,
                                         tcp: bool) -> None:
    ask(HANDLER, mutate(query, changes), source, tcp)


@QUICK
@given(valid_queries(), sources, st.booleans())
def test_valid_queries_are_never_formerr_and_strangers_only_refused(query: bytes, source: str,
                                                                   tcp: bool) -> None:
    outcome = ask(HANDLER, query, source, tcp)
    if source == SOURCES["stranger"]:
        assert isinstance(outcome, bytes), "a stranger's query was forwarded: open resolver"
    if isinstance(outcome, bytes):
        rcode = dns.message.from_wire(outcome).rcode()
        assert rcode != dns.rcode.FORMERR
        if source == SOURCES["stranger"]:
            assert rcode in (dns.rcode.REFUSED, dns.rcode.BADVERS)
    if dns.message.from_wire(query).edns > 0:
        assert isinstance(outcome, bytes)
        assert dns.message.from_wire(outcome).rcode() == dns.rcode.BADVERS


@QUICK
@given(valid_queries(), st.lists(mutations, max_size=3), sources)
def test_rate_limited_hostile_input_gets_refused_or_the_ladder(
        query: bytes, changes: list[Mutation], source: str) -> None:
    """Past the limit (over TCP: never dropped) the same oracle holds, and what would have
    been an answer is REFUSED."""
    limiter = RateLimiter(1, clock=lambda: 0.0)
    handler = build_handler(limiter)
    limiter.check(source, True)  # spend the only token
    data = mutate(query, changes)
    outcome = ask(handler, data, source, True)
    if isinstance(outcome, bytes) and not drops(data):
        assert dns.message.from_wire(outcome).rcode() in (
            dns.rcode.REFUSED, dns.rcode.FORMERR, dns.rcode.NOTIMP)
    assert not isinstance(outcome, Forward)


@QUICK
@given(st.lists(valid_queries(), max_size=5), st.binary(max_size=30),
       st.lists(st.integers(0, 2000), max_size=12))
def test_framer_any_split_of_framed_queries(queries: list[bytes], tail: bytes,
                                            cuts: list[int]) -> None:
    stream = b"".join(struct.pack("!H", len(q)) + q for q in queries) + tail
    check_framer(stream, cuts)


def test_oracle_catches_a_wrong_reply() -> None:
    """The checks above can fail: a reply with another ID, or to a QR=1 packet, is caught."""
    query = dns.message.make_query("web", "A").to_wire()
    reply = HANDLER.handle(query, SOURCES["container"], False)
    assert isinstance(reply, bytes)
    with pytest.raises(AssertionError):
        check_outcome(query, False, b"\xff\xff" + reply[2:])
    with pytest.raises(AssertionError):
        check_outcome(reply, False, reply)
