# Forwarding to upstream servers (SPEC §6): same transport as the client, a fresh random ID
# and source port per try, replies checked against ID and question, failover on SERVFAIL,
# REFUSED or timeout within a total budget, and a cap on forwards in flight. The only module
# that opens client sockets.
from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections.abc import Sequence

from dns.rcode import REFUSED, SERVFAIL

from resolver.config import Upstream
from resolver.wire import HEADER, QR, Query

log = logging.getLogger(__name__)

_TRY_NEXT = frozenset({SERVFAIL, REFUSED})


class ForwardRefused(Exception):
    """More forwards in flight than --max-forwards: the caller answers REFUSED."""


class Forwarder:
    def __init__(self, upstreams: Sequence[Upstream], timeout: float, budget: float,
                 max_in_flight: int) -> None:
        self.upstreams = tuple(upstreams)
        self._timeout = timeout
        self._budget = budget
        self._max_in_flight = max_in_flight
        self.in_flight = 0

    async def forward(self, query: Query, data: bytes, tcp: bool) -> bytes | None:
        """The upstream's reply with the client's ID restored, or None if every try failed."""
        if self.in_flight >= self._max_in_flight:
            raise ForwardRefused
        self.in_flight += 1
        try:
            return await self._try_each(query, data, tcp)
        finally:
            self.in_flight -= 1

    async def _try_each(self, query: Query, data: bytes, tcp: bool) -> bytes | None:
        deadline = time.monotonic() + self._budget
        for upstream in self.upstreams:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            upstream_id = secrets.randbelow(65536)
            outgoing = struct.pack("!H", upstream_id) + data[2:]
            try:
                async with asyncio.timeout(min(self._timeout, remaining)):
                    if tcp:
                        reply = await _exchange_tcp(upstream, outgoing, query, upstream_id)
                    else:
                        reply = await _exchange_udp(upstream, outgoing, query, upstream_id)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as error:
                log.info("upstream %s failed for %s: %s", upstream, query.qname,
                         type(error).__name__ if isinstance(error, TimeoutError) else error)
                continue
            rcode = reply[3] & 0x0F
            if rcode in _TRY_NEXT:
                log.info("upstream %s answered rcode %d for %s", upstream, rcode, query.qname)
                continue
            return data[:2] + reply[2:]
        return None


def matches(reply: bytes, query: Query, upstream_id: int) -> bool:
    """A reply for our question and ID; anything else is dropped (spoofing, stale replies)."""
    if len(reply) < 12 + len(query.question):
        return False
    rid, flags, qd, _, _, _ = HEADER.unpack_from(reply)
    if rid != upstream_id or not flags & QR or qd != 1:
        return False
    return reply[12 : 12 + len(query.question)].lower() == query.question.lower()


class _UdpExchange(asyncio.DatagramProtocol):
    def __init__(self, query: Query, upstream_id: int) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._query = query
        self._id = upstream_id

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if not self.reply.done() and matches(data, self._query, self._id):
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def _exchange_udp(upstream: Upstream, data: bytes, query: Query, upstream_id: int) -> bytes:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _UdpExchange(query, upstream_id), remote_addr=(upstream.host, upstream.port))
    try:
        transport.sendto(data)
        return await protocol.reply
    finally:
        transport.close()


async def _exchange_tcp(upstream: Upstream, data: bytes, query: Query, upstream_id: int) -> bytes:
    reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
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
