# The asyncio UDP shell around the handler: datagrams in, replies out, forwards as callbacks
# (Forwarder.forward_udp: no task per forwarded query).
# It moves bytes and nothing else (uvicorn's protocols over h11); it never raises into the loop.
#
# Per datagram: one handler call and one sendto, nothing allocated here. This is `--udp-io
# loop`, the default; `--udp-io batch` reads UDP on one thread in batches
# (resolver/udp_batch.py), cheaper under load and dearer one query at a time
# (docs/performance.md). Reading the socket on the loop ourselves
# (loop.add_reader, recvfrom/sendto, with or without draining under load) measured no better
# than uvloop's protocol path (12.2 against 11.6 us of CPU per query at 20k qps,
# bench/profile.py), so on the loop the protocol stays.
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, cast

from resolver.handler import Forward, Outcome
from resolver.transport import Resolution, client_key

log = logging.getLogger(__name__)


class UdpListener(asyncio.DatagramProtocol):
    def __init__(self, resolution: Resolution) -> None:
        self._resolution = resolution
        self._handle: Callable[[bytes, str, bool], Outcome] = resolution.handler.handle
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's and uvloop's UDP transports do not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._sendto = self._transport.sendto

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        source = addr[0]
        if len(addr) == 4:  # an IPv6 socket: an IPv4 client arrives as ::ffff:a.b.c.d
            source = client_key(source)
        outcome = self._handle(data, source, False)
        if isinstance(outcome, bytes):
            self._sendto(outcome, addr)
        elif outcome is not None:
            self._resolution.forward_udp(outcome, partial(self._reply, addr=addr), addr[0])

    def _reply(self, reply: bytes, addr: tuple[Any, ...]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(reply, addr)

    async def _forward(self, request: Forward, addr: tuple[Any, ...]) -> None:
        """The task path, for listeners that forward through sockets opened elsewhere."""
        self._reply(await self._resolution.forward(request, tcp=False, source=request.client),
                    addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)
