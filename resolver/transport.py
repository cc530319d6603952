# What the UDP and TCP listeners share: the handler, the forwarder, the forward tasks in flight
# and the TCP connection counts. Forwarding failures become DNS errors here, never exceptions.
from __future__ import annotations

import asyncio
import logging
from typing import Any

from dns.rcode import REFUSED, SERVFAIL

from resolver.forward import Forwarder, ForwardRefused
from resolver.handler import Forward, Handler

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
