# The oracle shared by the hostile-input property tests and the atheris fuzzer: a small synced
# table, the kinds of source a query can come from, and what must hold for any input at all
# (docs/failures.md): the handler never raises; no reply exactly for QR=1 or a short header; a reply
# parses, carries the query's ID and opcode, echoes a decodable question, and fits the transport.
from __future__ import annotations

import logging
import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode

from resolver.answer import Policy
from resolver.framing import TcpFramer, frame
from resolver.handler import Forward, Handler, Outcome
from resolver.ratelimit import RateLimiter
from testkit.topology import Topology, attach, container, network

NET = network("fuzznet", "172.70.0.0/24", ipv6="fd00:70::/64")
OTHER = network("othernet", "172.71.0.0/24")
CONTAINERS = [
    container("web", attach(NET, 2, "app", "shared"), hostname="webhost"),
    container("db", attach(NET, 3, "shared", links={"base": "web"}), attach(OTHER, 3)),
]
# container: a known endpoint; network: in a known subnet, not yet an endpoint; host: the
# loopback host view; stranger: anyone else (REFUSED).
SOURCES = {"container": "172.70.0.3", "network": "172.70.0.99", "host": "127.0.0.1",
           "stranger": "203.0.113.9", "ipv6": "fd00:70::2", "scoped": "fe80::1%eth0"}
DOMAIN = "zone.test"
UDP_DEFAULT_SIZE = 512
Z_BIT = 0x0040


class ErrorRecorder(logging.Handler):
    """The handler turns an internal error into SERVFAIL and a log line, which the reply
    checks alone would pass: collect resolver's ERROR records so a test can fail on them."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def check(self) -> None:
        if self.records:
            record = self.records[0]
            self.records.clear()
            cause = record.exc_info[1] if record.exc_info else None
            raise AssertionError(f"internal error logged: {record.getMessage()}") from cause


def record_errors() -> ErrorRecorder:
    recorder = ErrorRecorder()
    logging.getLogger("resolver").addHandler(recorder)
    return recorder


def build_handler(limiter: RateLimiter | None = None) -> Handler:
    """A handler over a synced table, serving the zone DOMAIN, forwarding misses."""
    table = Topology([NET, OTHER], CONTAINERS).table()
    return Handler(table, Policy(domain=DOMAIN, forwarding=True), limiter)


def drops(data: bytes) -> bool:
    """docs/failures.md: no reply to a header shorter than 12 bytes or one with QR=1."""
    return len(data) < 12 or bool(data[2] & 0x80)


def check_outcome(data: bytes, tcp: bool, outcome: Outcome) -> None:
    """Raises AssertionError when `outcome` is not an acceptable answer to `data`."""
    if drops(data):
        assert outcome is None, "a reply to input the accept filter drops"
        return
    assert outcome is not None, "silence for a query the accept filter passes"
    if isinstance(outcome, Forward):
        assert outcome.data == data and outcome.query.id == int.from_bytes(data[:2], "big")
        return
    reply = dns.message.from_wire(outcome)  # raises if we sent garbage
    qid, flags, qdcount = struct.unpack_from("!HHH", data)
    assert reply.id == qid, "reply ID differs from the query's"
    assert reply.flags & dns.flags.QR and not reply.flags & Z_BIT
    assert dns.opcode.from_flags(reply.flags) == dns.opcode.from_flags(flags)
    _check_ladder(flags, qdcount, reply)
    question = _decodable_question(data)
    if question is not None and _passes_header_filter(data):
        assert reply.question == question.question, "question not echoed"
    elif reply.question:
        assert question is not None and reply.question == question.question
    if tcp:
        assert not reply.flags & dns.flags.TC, "TCP answers are whole"
    else:
        assert len(outcome) <= _udp_limit(data), "UDP reply larger than the client takes"


def _check_ladder(flags: int, qdcount: int, reply: dns.message.Message) -> None:
    opcode = (flags >> 11) & 0xF
    if opcode not in (dns.opcode.QUERY, dns.opcode.NOTIFY):
        assert reply.rcode() == dns.rcode.NOTIMP
    elif qdcount != 1:
        assert reply.rcode() == dns.rcode.FORMERR


def _passes_header_filter(data: bytes) -> bool:
    """Docker's (miekg's) accept filter: QUERY/NOTIFY, one question, at most one answer and
    one authority record, at most two additional ones; others get a bare header."""
    _, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", data)
    return (flags >> 11) & 0xF in (0, 4) and qd == 1 and an <= 1 and ns <= 1 and ar <= 2


def _decodable_question(data: bytes) -> dns.message.Message | None:
    try:
        message = dns.message.from_wire(data, question_only=True)
    except Exception:
        return None
    return message if len(message.question) == 1 else None


def _udp_limit(data: bytes) -> int:
    try:
        query = dns.message.from_wire(data)
    except Exception:
        return UDP_DEFAULT_SIZE
    return max(UDP_DEFAULT_SIZE, query.payload) if query.edns >= 0 else UDP_DEFAULT_SIZE


def check_framer(stream: bytes, cuts: list[int]) -> None:
    """Fed in any split, the framer yields the same messages as fed whole, and keeps only
    the unfinished tail."""
    whole = TcpFramer()
    expected = whole.feed(stream)
    framer, got, start = TcpFramer(), [], 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts):
        got += framer.feed(stream[start:cut])
        start = cut
    got += framer.feed(stream[start:])
    assert got == expected and framer.pending == whole.pending
    assert b"".join(frame(m) for m in got) == stream[: len(stream) - whole.pending]
