# The asyncio UDP shell around the handler: datagrams in, replies out, forwards as tasks.
# It moves bytes and nothing else (uvicorn's protocols over h11); it never raises into the loop.
from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from resolver.handler import Forward
from resolver.transport import Resolution

log = logging.getLogger(__name__)


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
