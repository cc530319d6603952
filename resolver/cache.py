# The cache of upstream answers (docs/forwarding-cache.md): forwarded replies kept under
# (lower-cased name, type and class, RD/CD, EDNS and DO) for the lifetime their records allow
# (the smallest TTL; for NXDOMAIN and NODATA also the SOA MINIMUM, RFC 2308 §5), served with the
# client's ID and question case and every TTL decremented by the time spent in the cache. Only
# NOERROR and NXDOMAIN replies without TC are kept; negative ones only with an SOA. Bounded by
# an LRU of `capacity` entries. It only ever sees forwarded traffic, so local names never enter
# it. Sans-IO: a careful walk over the reply's bytes at store time, a clock injected.
from __future__ import annotations

import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, NamedTuple

from resolver.wire import AA, CD, HEADER, OPCODE_MASK, OPT_TYPE, QR, RD, TC, Query

NOERROR: Final = 0
NXDOMAIN: Final = 3
SOA_TYPE: Final = 6
# Longest lifetimes: a day for answers (unbound's cache-max-ttl) and three hours for negative
# answers (RFC 2308 §5 suggests one to three hours). A record's own TTL is still decremented.
MAX_TTL: Final = 86_400
MAX_NEGATIVE_TTL: Final = 10_800
_TTL: Final = struct.Struct("!I")
_RECORD_FIXED: Final = struct.Struct("!HHIH")  # type, class, TTL, rdlength

CacheKey = tuple[str, bytes, int]


def cache_key(query: Query) -> CacheKey:
    """Replies differ by name (in any case), type and class, RD and CD, whether the client
    spoke EDNS (an OPT in the reply) and its DO bit (DNSSEC records)."""
    edns = 0 if query.edns is None else (2 if query.edns.do else 1)
    return query.qname, query.question[-4:], (query.flags & (RD | CD)) | edns


class Walked(NamedTuple):
    """What a store needs from a reply: its bytes to keep, where each TTL sits (offsets in
    the kept bytes) with its value, and how long the whole may be served."""

    kept: bytes
    ttl_offsets: tuple[int, ...]
    ttls: tuple[int, ...]
    lifetime: int


class _Entry:
    __slots__ = ("body", "expires_at", "served", "served_second", "stored_at", "ttl_offsets",
                 "ttls")

    def __init__(self, walked: Walked, now: float) -> None:
        self.body = walked.kept[2:]  # everything after the ID
        self.ttl_offsets = tuple(offset - 2 for offset in walked.ttl_offsets)
        self.ttls = walked.ttls
        self.stored_at = now
        self.expires_at = now + walked.lifetime
        self.served_second = 0
        self.served = self.body

    def body_after(self, elapsed: int) -> bytes:
        """The body with every TTL lowered by `elapsed` whole seconds (kept per second)."""
        if elapsed != self.served_second:
            body = bytearray(self.body)
            for offset, ttl in zip(self.ttl_offsets, self.ttls, strict=True):
                _TTL.pack_into(body, offset, max(0, ttl - elapsed))
            self.served, self.served_second = bytes(body), elapsed
        return self.served


class AnswerCache:
    """Upstream replies by cache_key, at most `capacity`, least recently used dropped first."""

    def __init__(self, capacity: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self._clock = clock
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self.hits = 0
        self.stored = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, query: Query, max_size: int) -> bytes | None:
        """The cached reply for `query` after its ID (the caller puts the client's ID in
        front), with the query's question, if one is alive and fits `max_size` (a bigger one
        is forwarded again and cut by the forwarder)."""
        key = cache_key(query)
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        if now >= entry.expires_at:
            del self._entries[key]
            return None
        if len(entry.body) + 2 > max_size:
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        body = entry.body_after(int(now - entry.stored_at))
        question = query.question
        return b"".join((body[:10], question, body[10 + len(question):]))

    def store(self, query: Query, reply: bytes) -> None:
        """Keep `reply` (the upstream's, already matched to `query`) if it may be cached."""
        walked = walk_reply(reply, 12 + len(query.question))
        if walked is None:
            return
        key = cache_key(query)
        self._entries.pop(key, None)
        while len(self._entries) >= self.capacity:
            self._entries.popitem(last=False)
        self._entries[key] = _Entry(walked, self._clock())
        self.stored += 1


def walk_reply(reply: bytes, records_start: int) -> Walked | None:
    """The parts of a cacheable reply, or None: not a plain NOERROR/NXDOMAIN answer, TC set,
    malformed, negative without an SOA, or a lifetime of 0."""
    if len(reply) < records_start:
        return None
    _, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(reply)
    rcode = flags & 0x0F
    if not flags & QR or flags & (TC | OPCODE_MASK) or qdcount != 1 \
            or rcode not in (NOERROR, NXDOMAIN):
        return None
    offsets: list[int] = []
    ttls: list[int] = []
    soa_minimum: int | None = None
    offset, kept = records_start, reply
    for index in range(ancount + nscount + arcount):
        name_end = skip_name(kept, offset)
        if name_end is None or name_end + 10 > len(kept):
            return None
        rtype, _, ttl, rdlength = _RECORD_FIXED.unpack_from(kept, name_end)
        end = name_end + 10 + rdlength
        if end > len(kept):
            return None
        if rtype == OPT_TYPE:
            if index < ancount + nscount or end != len(kept):
                return None  # an OPT belongs last in the additional section
            # Options (a cookie, a padding) belong to one exchange: keep the OPT bare.
            kept = kept[: name_end + 8] + b"\x00\x00"
            end = len(kept)
        else:
            offsets.append(name_end + 4)
            ttls.append(ttl)
            if rtype == SOA_TYPE and ancount <= index < ancount + nscount and rdlength >= 22:
                soa_minimum = _TTL.unpack_from(kept, end - 4)[0]
        offset = end
    if offset != len(kept):
        return None
    lifetime = _lifetime(rcode == NXDOMAIN or ancount == 0, ttls, soa_minimum)
    if lifetime <= 0:
        return None
    kept = kept[:2] + (flags & ~AA).to_bytes(2, "big") + kept[4:]  # not authoritative now
    return Walked(kept, tuple(offsets), tuple(ttls), lifetime)


def _lifetime(negative: bool, ttls: list[int], soa_minimum: int | None) -> int:
    """Smallest TTL (TTLs above 2^31 count as 0, RFC 2181 §8); a negative answer also
    lives no longer than its SOA's MINIMUM and is not kept without one (RFC 2308 §5)."""
    bounded = [ttl if ttl < 2**31 else 0 for ttl in ttls]
    if negative:
        if soa_minimum is None:
            return 0
        return min([*bounded, soa_minimum, MAX_NEGATIVE_TTL])
    return min([*bounded, MAX_TTL]) if bounded else 0


def skip_name(data: bytes, offset: int) -> int | None:
    """Offset just past the (possibly compressed) name at `offset`, or None if it runs off
    the end or holds a reserved label type."""
    size = len(data)
    while offset < size:
        length = data[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2 if offset + 2 <= size else None
        if length & 0xC0:
            return None
        offset += length + 1
        if length == 0:
            return offset
    return None
