# The dnspython path: queries the fast parser will not take (extra records, TSIG, odd OPT,
# trailing bytes), answers with an authority section (--domain SOA) or an additional one (SRV
# targets' addresses, dropped without TC when they do not fit), and the reference the fast
# path is tested against byte for byte. Pure: bytes in, bytes out.
from __future__ import annotations

import random
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
from dns.rcode import FORMERR

from resolver.answer import LocalAnswer
from resolver.wire import (
    EDNS_PAYLOAD,
    SLOW,
    UDP_DEFAULT_SIZE,
    Edns,
    Query,
    Reject,
    accept,
    parse_query,
    reject_header,
    reply_flags,
)


@dataclass(frozen=True, slots=True)
class ParsedSlow:
    query: Query
    message: dns.message.Message


def parse_any(data: bytes) -> Query | ParsedSlow | Reject:
    """The fast parser, or dnspython for what it leaves (docs/answers.md: the two paths)."""
    parsed = parse_query(data)
    return parse_with_dnspython(data) if parsed is SLOW else parsed


def query_of(parsed: Query | ParsedSlow) -> Query:
    return parsed if isinstance(parsed, Query) else parsed.query


def parse_with_dnspython(data: bytes) -> ParsedSlow | Reject:
    """The same accept filter, then dnspython; malformed input gets FORMERR (docs/failures.md)."""
    rejected = accept(data)
    if rejected is not None:
        return rejected
    try:
        message = dns.message.from_wire(data)
    except dns.message.ShortHeader:
        return Reject(None)
    except Exception:  # any undecodable query: FORMERR, with the question when salvageable
        return Reject(_formerr(data))
    if len(message.question) != 1:
        return Reject(_formerr(data))
    rrset = message.question[0]
    edns = None
    if message.edns >= 0:
        do = bool(message.ednsflags & dns.flags.DO)
        edns = Edns(message.payload, message.edns, do)
    question = _question_wire(message)
    qname = rrset.name.to_text(omit_final_dot=True).lower() if rrset.name != dns.name.root else ""
    query = Query(message.id, message.flags, question, qname, int(rrset.rdtype), edns)
    return ParsedSlow(query, message)


def _question_wire(message: dns.message.Message) -> bytes:
    rrset = message.question[0]
    name = rrset.name.to_wire()
    assert name is not None
    return name + int(rrset.rdtype).to_bytes(2, "big") + int(rrset.rdclass).to_bytes(2, "big")


def _formerr(data: bytes) -> bytes:
    qid = int.from_bytes(data[0:2], "big")
    flags = int.from_bytes(data[2:4], "big")
    try:
        salvaged = dns.message.from_wire(data, question_only=True)
    except Exception:
        return reject_header(qid, flags, FORMERR)
    if len(salvaged.question) != 1:
        return reject_header(qid, flags, FORMERR)
    response = _response(salvaged, FORMERR, authoritative=False)
    return response.to_wire(max_size=UDP_DEFAULT_SIZE, prefer_truncation=True)


def _response(query: dns.message.Message, rcode: int, authoritative: bool,
              edns: Edns | None = None) -> dns.message.Message:
    response = dns.message.Message(id=query.id)
    response.flags = reply_flags(query.flags, 0, authoritative, False)
    response.question = [dns.rrset.RRset(q.name, q.rdclass, q.rdtype) for q in query.question]
    if edns is not None:
        response.use_edns(0, dns.flags.DO if edns.do else 0, EDNS_PAYLOAD)
    response.set_rcode(dns.rcode.Rcode.make(rcode))
    return response


def render_with_dnspython(parsed: ParsedSlow, answer: LocalAnswer, max_size: int) -> bytes:
    """Render `answer` with dnspython: one RRset per record, so truncation drops records one
    at a time from the end, as Docker does."""
    query = parsed.query
    response = _response(parsed.message, answer.rcode, answer.authoritative, query.edns)
    qname = parsed.message.question[0].name
    records = [(qname, record) for record in answer.records]
    if answer.shuffle:
        random.shuffle(records)
    for name, record in records:
        rrset = dns.rrset.RRset(name, record.rdata.rdclass, record.rdata.rdtype)
        rrset.add(record.rdata, record.ttl)
        response.answer.append(rrset)
    for section, extra in ((response.authority, answer.authority),
                           (response.additional, answer.additional)):
        for name, record in extra:
            rrset = dns.rrset.RRset(name, record.rdata.rdclass, record.rdata.rdtype)
            rrset.add(record.rdata, record.ttl)
            section.append(rrset)
    return response.to_wire(max_size=max_size, prefer_truncation=True)

