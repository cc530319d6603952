# Checking and trimming upstream replies (docs/forwarding-cache.md), sans-IO: whether a reply
# answers our question under our ID (anything else is a spoof or stale), and a UDP reply cut to
# the client's size (whole answer records that fit, TC set: RFC 1035 §4.2.1, RFC 6891 §7).
from __future__ import annotations

from resolver.cache import skip_name
from resolver.wire import HEADER, QR, TC, Query, opt_record


def matches(reply: bytes, query: Query, upstream_id: int) -> bool:
    """A reply for our question and ID; anything else is dropped (spoofing, stale replies).
    The name may differ in letter case (0x20 randomisation); type and class may not."""
    size = len(query.question)
    if len(reply) < 12 + size:
        return False
    rid, flags, qd, _, _, _ = HEADER.unpack_from(reply)
    if rid != upstream_id or not flags & QR or qd != 1:
        return False
    name_end = 12 + size - 4
    return (reply[name_end : 12 + size] == query.question[-4:]
            and reply[12:name_end].lower() == query.question[:-4].lower())


def fit_udp(reply: bytes, query: Query) -> bytes:
    """`reply` as is if it fits the client's UDP size (512, or its EDNS payload), else TC set
    with the whole answer records that fit, no authority or additional records, and our OPT
    when the client sent one. Upstreams that ignore EDNS send more than the client can take
    (moby/moby#44575); Docker v24+ relays them as they come."""
    limit = query.max_udp_size()
    if len(reply) <= limit:
        return reply
    start = 12 + len(query.question)
    opt = b"" if query.edns is None else opt_record(query.edns)
    kept = _answers_that_fit(reply, start, limit - len(opt))
    _, flags, _, _, _, _ = HEADER.unpack_from(reply)
    header = HEADER.pack(query.id, flags | TC, 1, len(kept), 0, 1 if opt else 0)
    return b"".join((header, reply[12:start], *kept, opt))


def _answers_that_fit(reply: bytes, offset: int, limit: int) -> list[bytes]:
    """The leading answer records of `reply` that fit in `limit` bytes (compression pointers
    point backwards, so a prefix stays valid); none if the section is malformed."""
    kept: list[bytes] = []
    for _ in range(HEADER.unpack_from(reply)[3]):
        end = _record_end(reply, offset)
        if end is None or end > limit:
            return kept if end is not None else []
        kept.append(reply[offset:end])
        offset = end
    return kept


def _record_end(reply: bytes, offset: int) -> int | None:
    """Offset just past the resource record at `offset`, or None if it runs off the end."""
    name_end = skip_name(reply, offset)
    if name_end is None or name_end + 10 > len(reply):
        return None
    end = name_end + 10 + int.from_bytes(reply[name_end + 8 : name_end + 10], "big")
    return end if end <= len(reply) else None
