# Forwarding to upstream servers (SPEC §6): same transport as the client, a fresh random ID
# and source port per try, replies checked against source, ID and question (anything else is
# dropped as spoofing), failover on SERVFAIL, REFUSED, timeout or a dead port within a total
# budget, a cap on forwards in flight, and UDP replies cut to the client's size (whole
# answer records that fit, TC set: RFC 1035 §4.2.1, RFC 6891 §7). The only module that opens
# client sockets.
from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

from dns.rcode import REFUSED, SERVFAIL

from resolver.wire import HEADER, QR, TC, Query, opt_record

log = logging.getLogger(__name__)

_TRY_NEXT = frozenset({SERVFAIL, REFUSED})


class Upstream(NamedTuple):
    """An upstream server: an address (never a name, which would need resolving, perhaps
    through us) and a port."""

    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class ForwardRefused(Exception):
    """More forwards in flight than --max-forwards: the caller answers REFUSED."""


# Makes the socket of one upstream try (family, type). Takeover makes it inside a container's
# namespace, to reach Docker's resolver there (docs/takeover.md).
SocketOpener = Callable[[int, int], Awaitable[socket.socket]]


async def plain_socket(family: int, kind: int) -> socket.socket:
    return socket.socket(family, kind)


class InFlight:
    """A count of forwards in flight shared by several forwarders, and its cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0


class Forwarder:
    def __init__(self, upstreams: Sequence[Upstream], timeout: float, budget: float,
                 max_in_flight: int, *, open_socket: SocketOpener = plain_socket,
                 total: InFlight | None = None,
                 tcp_upstreams: Sequence[Upstream] | None = None) -> None:
        """`max_in_flight` caps this forwarder; `total`, when given, is a cap shared with
        others (takeover: a quarter of --max-forwards per container, under the whole)."""
        self.upstreams = tuple(upstreams)
        self._timeout = timeout
        self._budget = budget
        self._max_in_flight = max_in_flight
        self._open_socket = open_socket
        self._total = total
        # Where TCP queries go when not to `upstreams` (Docker's resolver: one port per transport).
        self.tcp_upstreams = tuple(tcp_upstreams) if tcp_upstreams else None
        self.in_flight = 0

    async def forward(self, query: Query, data: bytes, tcp: bool) -> bytes | None:
        """The upstream's reply with the client's ID restored, or None if every try failed."""
        total = self._total
        if self.in_flight >= self._max_in_flight or (total is not None
                                                     and total.count >= total.limit):
            raise ForwardRefused
        self.in_flight += 1
        if total is not None:
            total.count += 1
        try:
            return await self._try_each(query, data, tcp)
        finally:
            self.in_flight -= 1
            if total is not None:
                total.count -= 1

    async def _try_each(self, query: Query, data: bytes, tcp: bool) -> bytes | None:
        deadline = time.monotonic() + self._budget
        upstreams = self.tcp_upstreams if tcp and self.tcp_upstreams else self.upstreams
        for upstream in upstreams:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            reply = await self._try_one(upstream, query, data, tcp, min(self._timeout, remaining))
            if reply is None:
                continue
            rcode = reply[3] & 0x0F
            if rcode in _TRY_NEXT:
                log.info("upstream %s answered rcode %d for %s", upstream, rcode, query.qname)
                continue
            relayed = data[:2] + reply[2:]
            return relayed if tcp else fit_udp(relayed, query)
        return None

    async def _try_one(self, upstream: Upstream, query: Query, data: bytes, tcp: bool,
                       timeout: float) -> bytes | None:
        """One exchange under a fresh random ID: the matching reply, or None (timeout, a dead
        port, a closed connection)."""
        upstream_id = secrets.randbelow(65536)
        outgoing = struct.pack("!H", upstream_id) + data[2:]
        exchange = _exchange_tcp if tcp else _exchange_udp
        try:
            async with asyncio.timeout(timeout):
                return await exchange(self._open_socket, upstream, outgoing, query, upstream_id)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as error:
            log.info("upstream %s failed for %s: %s", upstream, query.qname,
                     type(error).__name__ if isinstance(error, TimeoutError) else error)
            return None


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
    while offset < len(reply):
        length = reply[offset]
        if length & 0xC0:
            offset += 2
            break
        offset += length + 1
        if length == 0:
            break
    else:
        return None
    if offset + 10 > len(reply):
        return None
    end = offset + 10 + int.from_bytes(reply[offset + 8 : offset + 10], "big")
    return end if end <= len(reply) else None


async def _exchange_udp(open_socket: SocketOpener, upstream: Upstream, data: bytes, query: Query,
                        upstream_id: int) -> bytes:
    # A connected socket on a fresh ephemeral port: the kernel drops datagrams from any other
    # address or port, and a closed upstream port (ICMP) fails the receive. A bare socket, not
    # a transport: no address resolution and no protocol objects per try (upstreams are IPs).
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in upstream.host else socket.AF_INET
    with await open_socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((upstream.host, upstream.port))
        sock.send(data)
        while True:
            reply = await loop.sock_recv(sock, 65535)
            if matches(reply, query, upstream_id):
                return reply


async def _exchange_tcp(open_socket: SocketOpener, upstream: Upstream, data: bytes, query: Query,
                        upstream_id: int) -> bytes:
    family = socket.AF_INET6 if ":" in upstream.host else socket.AF_INET
    sock = await open_socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (upstream.host, upstream.port))
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        writer.write(struct.pack("!H", len(data)) + data)
        await writer.drain()
        while True:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
            reply = await reader.readexactly(length)
            if matches(reply, query, upstream_id):
                return reply
    finally:
        writer.close()
