# asyncio shells around the handler: UDP and TCP listeners that move bytes and nothing else
# (uvicorn's protocols over h11). They never raise into the loop: the handler owns the error
# ladder, forwarding owns upstream failures, and these own sockets, timers and connection caps.
from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, cast

from dns.rcode import REFUSED, SERVFAIL

from resolver.forward import Forwarder, ForwardRefused
from resolver.framing import TcpFramer, frame
from resolver.handler import Forward, Handler, Outcome

log = logging.getLogger(__name__)


class Resolution:
    """What the listeners share: the handler, the forwarder and the tasks in flight."""

    def __init__(self, handler: Handler, forwarder: Forwarder | None) -> None:
        self.handler = handler
        self.forwarder = forwarder
        self.tasks: set[asyncio.Task[Any]] = set()
        self.tcp_connections = 0
        self.tcp_per_source: dict[str, int] = {}

    async def forward(self, request: Forward, tcp: bool) -> bytes:
        query = request.query
        if self.forwarder is None:
            return self.handler.error_reply(query, SERVFAIL, tcp)
        try:
            reply = await self.forwarder.forward(query, request.data, tcp)
        except asyncio.CancelledError:
            raise
        except ForwardRefused:
            log.warning("more than %d forwards in flight: REFUSED %s",
                        self.forwarder.in_flight, query.qname)
            return self.handler.error_reply(query, REFUSED, tcp)
        except Exception:
            log.exception("forwarding %s failed unexpectedly", query.qname)
            return self.handler.error_reply(query, SERVFAIL, tcp)
        if reply is None:
            return self.handler.error_reply(query, SERVFAIL, tcp)
        return reply

    def spawn(self, task: asyncio.Task[Any]) -> None:
        # Keep a hard reference so the task is not garbage-collected mid-flight.
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class UdpListener(asyncio.DatagramProtocol):
    def __init__(self, resolution: Resolution) -> None:
        self._resolution = resolution
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's and uvloop's UDP transports do not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        outcome = self._resolution.handler.handle(data, addr[0], False)
        if outcome is None or self._transport is None:
            return
        if isinstance(outcome, bytes):
            self._transport.sendto(outcome, addr)
        else:
            task = asyncio.get_running_loop().create_task(self._forward(outcome, addr))
            self._resolution.spawn(task)

    async def _forward(self, request: Forward, addr: tuple[Any, ...]) -> None:
        reply = await self._resolution.forward(request, tcp=False)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class TcpConnection(asyncio.Protocol):
    """One client connection: frames in, replies out in the order the queries came."""

    def __init__(self, resolution: Resolution, idle_timeout: float, max_total: int,
                 max_per_source: int) -> None:
        self._resolution = resolution
        self._idle_timeout = idle_timeout
        self._limits = (max_total, max_per_source)
        self._framer = TcpFramer()
        self._pending: deque[asyncio.Future[bytes] | bytes | None] = deque()
        self._transport: asyncio.Transport | None = None
        self._source = ""
        self._counted = False
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport does not subclass asyncio.Transport either.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._source = str(peer[0]) if peer else ""
        shared = self._resolution
        if (shared.tcp_connections >= self._limits[0]
                or shared.tcp_per_source.get(self._source, 0) >= self._limits[1]):
            log.warning("tcp connection from %s refused: connection cap", self._source)
            self._transport.abort()
            return
        shared.tcp_connections += 1
        shared.tcp_per_source[self._source] = shared.tcp_per_source.get(self._source, 0) + 1
        self._counted = True
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self._arm_idle()
        for message in self._framer.feed(data):
            outcome: Outcome = self._resolution.handler.handle(message, self._source, True)
            if isinstance(outcome, Forward):
                future = asyncio.ensure_future(self._resolution.forward(outcome, tcp=True))
                future.add_done_callback(lambda _: self._flush())
                self._pending.append(future)
            else:
                self._pending.append(outcome)
        self._flush()

    def _flush(self) -> None:
        transport = self._transport
        while self._pending and transport is not None and not transport.is_closing():
            head = self._pending[0]
            if isinstance(head, asyncio.Future):
                if not head.done():
                    return
                reply = None if head.cancelled() or head.exception() else head.result()
            else:
                reply = head
            self._pending.popleft()
            if reply is not None:
                transport.write(frame(reply))

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(self._idle_timeout, self._on_idle)

    def _on_idle(self) -> None:
        if self._pending:
            self._arm_idle()  # still answering: idle means the client is silent *and* served
        elif self._transport is not None:
            self._transport.close()

    def pause_writing(self) -> None:
        # A client that pipelines without reading stops being read until it catches up.
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        for item in self._pending:
            if isinstance(item, asyncio.Future):
                item.cancel()
        self._pending.clear()
        if self._counted:
            shared = self._resolution
            shared.tcp_connections -= 1
            left = shared.tcp_per_source.get(self._source, 1) - 1
            if left:
                shared.tcp_per_source[self._source] = left
            else:
                shared.tcp_per_source.pop(self._source, None)
            self._counted = False
        self._transport = None
