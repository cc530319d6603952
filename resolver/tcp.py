# The asyncio TCP shell around the handler: 2-byte framing, replies in query order (forwards
# included), an idle timeout, connection caps per source and in total, and read pauses while a
# client does not read its replies. It never raises into the loop.
from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import cast

from resolver.framing import TcpFramer, frame
from resolver.handler import Forward, Outcome
from resolver.transport import Resolution

log = logging.getLogger(__name__)


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
