# DNS bytes for the common case, without building dnspython messages: the accept filter of
# docs/failures.md, a strict parser for a one-question query with at most an OPT record, and the
# renderer of replies whose records all hang off the question name. Anything unusual returns
# SLOW and goes to resolver.slowpath (dnspython). No I/O here.
from __future__ import annotations

import io
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal, NamedTuple

import dns.name
import dns.rdata
from dns.rcode import FORMERR, NOTIMP

HEADER: Final = struct.Struct("!HHHHHH")
QR: Final = 0x8000
OPCODE_MASK: Final = 0x7800
AA: Final = 0x0400
TC: Final = 0x0200
RD: Final = 0x0100
RA: Final = 0x0080
CD: Final = 0x0010
OPCODE_QUERY: Final = 0
OPCODE_NOTIFY: Final = 4
EDNS_DO: Final = 0x8000
OPT_TYPE: Final = 41
CLASS_IN: Final = 1
UDP_DEFAULT_SIZE: Final = 512  # RFC 1035 §4.2.1
# Our EDNS payload size (RFC 6891 §6.2.5, DNS flag day 2020): avoids IP fragmentation.
EDNS_PAYLOAD: Final = 1232
TCP_MAX_SIZE: Final = 65535
_OPT_TAIL: Final = struct.Struct("!HHBBHH")  # type, payload, ext-rcode, version, flags, rdlen
_TYPE_CLASS: Final = struct.Struct("!HH")
# Label bytes that read the same in text form: anything else takes dnspython's escaped text.
_PLAIN: Final = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*"
_PLAIN_OR_DOT: Final = _PLAIN + b"."


class Route(Enum):
    SLOW = "slow"  # not for the fast parser: dnspython decides (resolver/slowpath.py)


SLOW: Final = Route.SLOW


# Edns and Query are built for every parsed query: NamedTuples, as immutable as frozen
# dataclasses and five times cheaper to build.
class Edns(NamedTuple):
    payload: int
    version: int
    do: bool


class Query(NamedTuple):
    """A parsed query. `question` is the question section exactly as received (echoed back);
    `qname` is its name in lower-case text without the trailing dot ("" for the root)."""

    id: int
    flags: int
    question: bytes
    qname: str
    qtype: int
    edns: Edns | None

    def max_udp_size(self) -> int:
        if self.edns is None:
            return UDP_DEFAULT_SIZE
        return max(UDP_DEFAULT_SIZE, min(self.edns.payload, TCP_MAX_SIZE))

    def max_size(self, tcp: bool) -> int:
        """How large a reply to this query may be: whole over TCP, else the UDP limit."""
        return TCP_MAX_SIZE if tcp else self.max_udp_size()


@dataclass(frozen=True, slots=True)
class Reject:
    """The accept filter's verdict: reply with a bare header (or drop when `reply` is None)."""

    reply: bytes | None


DROP: Final = Reject(None)


def reject_header(query_id: int, flags: int, rcode: int) -> bytes:
    """miekg's reply to a rejected header: no sections, RA=0, RD/CD kept for QUERY only."""
    opcode = flags & OPCODE_MASK
    kept = flags & (RD | CD) if opcode == OPCODE_QUERY else 0
    return HEADER.pack(query_id, QR | opcode | kept | rcode, 0, 0, 0, 0)


def accept(data: bytes) -> Reject | None:
    """The accept filter (docs/failures.md) on the header; None means go on parsing."""
    if len(data) < 12:
        return DROP
    qid, flags, qd, an, ns, ar = HEADER.unpack_from(data)
    if flags & QR:
        return DROP
    opcode = (flags & OPCODE_MASK) >> 11
    if opcode not in (OPCODE_QUERY, OPCODE_NOTIFY):
        return Reject(reject_header(qid, flags, NOTIMP))
    if qd != 1 or an > 1 or ns > 1 or ar > 2:
        return Reject(reject_header(qid, flags, FORMERR))
    return None


def parse_query(data: bytes) -> Query | Reject | Literal[Route.SLOW]:
    """Accept filter, then the question and an optional lone OPT record."""
    rejected = accept(data)
    if rejected is not None:
        return rejected
    qid, flags, _, an, ns, ar = HEADER.unpack_from(data)
    name = _read_name(data, 12)
    if name is None or name[0] + 4 > len(data):
        return SLOW  # compressed (legal, if odd) or malformed: dnspython decides (docs/answers.md)
    end, labels = name
    question = data[12 : end + 4]
    qtype = _TYPE_CLASS.unpack_from(data, end)[0]
    rest = end + 4
    edns: Edns | None = None
    if an or ns or ar > 1:
        return SLOW
    if ar == 1:
        parsed = _parse_opt(data, rest)
        if parsed is None:
            return SLOW
        edns = parsed
    elif rest != len(data):
        return SLOW
    return Query(qid, flags, question, _name_text(labels), qtype, edns)


def _read_name(data: bytes, offset: int) -> tuple[int, list[bytes]] | None:
    """(offset just past, labels) of an uncompressed name; None if malformed or compressed."""
    labels: list[bytes] = []
    total = 0
    size = len(data)
    while offset < size:
        length = data[offset]
        if length == 0:
            return offset + 1, labels
        if length & 0xC0:
            return None  # compressed: left to dnspython
        total += length + 1
        if total > 254:
            return None
        labels.append(data[offset + 1 : offset + 1 + length])
        offset += length + 1
    return None


def _name_text(labels: list[bytes]) -> str:
    """Lower-case text of a name; labels with bytes that text escapes take dnspython's form."""
    if not labels:
        return ""
    joined = b".".join(labels)
    if not joined.translate(None, _PLAIN_OR_DOT) and joined.count(b".") == len(labels) - 1:
        return joined.lower().decode("ascii")
    return dns.name.Name(labels).to_text(omit_final_dot=True).lower()


def _parse_opt(data: bytes, offset: int) -> Edns | None:
    if offset + 11 > len(data) or data[offset] != 0:
        return None
    rtype, payload, _, version, eflags, rdlen = _OPT_TAIL.unpack_from(data, offset + 1)
    if rtype != OPT_TYPE or offset + 11 + rdlen != len(data):
        return None
    return Edns(payload, version, bool(eflags & EDNS_DO))


def opt_record(edns: Edns, ext_rcode: int = 0) -> bytes:
    """Our OPT: payload 1232, version 0, DO echoed, no options (docs/answers.md)."""
    return b"\x00" + _OPT_TAIL.pack(OPT_TYPE, EDNS_PAYLOAD, ext_rcode, 0,
                                    EDNS_DO if edns.do else 0, 0)


def reply_flags(query_flags: int, rcode: int, authoritative: bool, truncated: bool) -> int:
    """Docker's reply header: opcode, RD, CD copied (QUERY only); QR=1; RA=1 (docs/answers.md)."""
    opcode = query_flags & OPCODE_MASK
    kept = query_flags & (RD | CD) if opcode == 0 else 0
    return (QR | opcode | kept | RA | (AA if authoritative else 0)
            | (TC if truncated else 0) | (rcode & 0xF))


def render(query: Query, rcode: int, records: Sequence[bytes], max_size: int,
           authoritative: bool = False) -> bytes:
    """Header + echoed question + as many records as fit + OPT when the query had one."""
    opt = b"" if query.edns is None else opt_record(query.edns, rcode >> 4)
    budget = max_size - 12 - len(query.question) - len(opt)
    kept: list[bytes] = []
    for record in records:
        budget -= len(record)
        if budget < 0:
            break
        kept.append(record)
    truncated = len(kept) < len(records)
    header = HEADER.pack(query.id, reply_flags(query.flags, rcode, authoritative, truncated),
                         1, len(kept), 0, 1 if opt else 0)
    return b"".join((header, query.question, *kept, opt))


def shuffled(records: Sequence[bytes]) -> list[bytes]:
    copy = list(records)
    random.shuffle(copy)
    return copy


def encode_answer_records(
    qname: str, rrs: Sequence[tuple[dns.rdata.Rdata, int]]
) -> tuple[bytes, ...]:
    """Wire form of answer records owned by the question name, compressed exactly as
    dnspython's renderer would compress them after that question (offsets do not depend on
    the question's letter case)."""
    name = dns.name.from_text(qname) if qname else dns.name.root
    buffer = io.BytesIO()
    buffer.write(bytes(12))
    compress: dict[dns.name.Name, int] = {}
    name.to_wire(buffer, compress)
    buffer.write(bytes(4))
    blobs: list[bytes] = []
    for rdata, ttl in rrs:
        start = buffer.tell()
        name.to_wire(buffer, compress)
        buffer.write(struct.pack("!HHIH", rdata.rdtype, rdata.rdclass, ttl, 0))
        rdata_start = buffer.tell()
        rdata.to_wire(buffer, compress, None, False)
        end = buffer.tell()
        buffer.seek(rdata_start - 2)
        buffer.write(struct.pack("!H", end - rdata_start))
        buffer.seek(end)
        blobs.append(buffer.getvalue()[start:end])
    return tuple(blobs)
