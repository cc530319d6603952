# What the UDP and TCP listeners share: the handler, the forwarder, the forward tasks in flight
# and the TCP connection counts. Forwarding failures become DNS errors here, never exceptions.
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from dns.rcode import REFUSED, SERVFAIL

from resolver.forward import Forwarder, ForwardRefused
from resolver.handler import Forward, Handler
from resolver.stats import How, QueryStats

log = logging.getLogger(__name__)


# Floods (past the forward cap, past the TCP caps) log one line per this many seconds.
LOG_EVERY = 10.0


def client_key(address: str) -> str:
    """One client, one key: an IPv4 client seen on a dual-stack socket (`::ffff:a.b.c.d`) is
    the same client as `a.b.c.d` for views, caps and rate limits (docs/views.md)."""
    return address[7:] if address.startswith("::ffff:") and "." in address else address


class LogEvery:
    """At most one line per `interval` seconds for one recurring condition; the next line says
    how many were held back, so a flood cannot flood the log."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_EVERY) -> None:
        self._log = logger
        self._interval = interval
        self._next = 0.0
        self._held = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return
        held, self._held, self._next = self._held, 0, now + self._interval
        suffix = f" (and {held} more like it in the last {self._interval:g}s)" if held else ""
        self._log.warning(message + suffix, *args)


class Resolution:
    """What the listeners share: the handler, the forwarder, the tasks in flight, and the
    forwards in flight per client (at most `per_client`, so that one client cannot starve
    the others of --max-forwards; docs/forwarding.md)."""

    def __init__(self, handler: Handler, forwarder: Forwarder | None,
                 per_client: int | None = None) -> None:
        self.handler = handler
        self.forwarder = forwarder
        self.tasks: set[asyncio.Task[Any]] = set()
        self._over_cap = LogEvery(log)
        self._client_cap = LogEvery(log)
        self._per_client = per_client
        self._by_client: dict[str, int] = {}

    def _take(self, client: str) -> bool:
        """Count one more forward for `client`; False when it is at its cap."""
        if self._per_client is None:
            return True
        held = self._by_client.get(client, 0)
        if held >= self._per_client:
            self._client_cap.warning("client %s has %d forwards in flight: REFUSED", client,
                                     held)
            return False
        self._by_client[client] = held + 1
        return True

    def _give_back(self, client: str) -> None:
        if self._per_client is None:
            return
        left = self._by_client.get(client, 1) - 1
        if left > 0:
            self._by_client[client] = left
        else:
            self._by_client.pop(client, None)

    async def forward(self, request: Forward, tcp: bool, source: str = "") -> bytes:
        reply = await self._forward(request, tcp)
        stats = self.handler.stats
        if stats is not None:
            how = How.REFUSED if reply[3] & 0x0F == REFUSED else How.FORWARDED
            with self.handler.lock:  # the UDP receive thread counts too
                stats.note(request.data, source, tcp, reply, how)
        return reply

    async def _forward(self, request: Forward, tcp: bool) -> bytes:
        query = request.query
        if self.forwarder is None:
            return self.handler.error_reply(query, SERVFAIL, tcp)
        if not self._take(request.client):
            return self.handler.error_reply(query, REFUSED, tcp)
        try:
            reply = await self.forwarder.forward(query, request.data, tcp)
        except asyncio.CancelledError:
            raise
        except ForwardRefused:
            self._over_cap.warning("more than %d forwards in flight: REFUSED %s",
                                   self.forwarder.in_flight, query.qname)
            return self.handler.error_reply(query, REFUSED, tcp)
        except Exception:
            log.exception("forwarding %s failed unexpectedly", query.qname)
            return self.handler.error_reply(query, SERVFAIL, tcp)
        finally:
            self._give_back(request.client)
        if reply is None:
            return self.handler.error_reply(query, SERVFAIL, tcp)
        return reply

    def forward_udp(self, request: Forward, send: Callable[[bytes], None],
                    source: str = "") -> None:
        """Forward a UDP query without a task (Forwarder.forward_udp); `send` gets the
        client's reply: the upstream's, SERVFAIL when all failed, REFUSED past the cap."""
        stats = self.handler.stats
        if stats is not None:  # counted when answered (docs/operations.md)
            send = _counted(send, stats, self.handler.lock, request.data, source)
        query = request.query
        if self.forwarder is None:
            send(self.handler.error_reply(query, SERVFAIL, False))
            return
        if not self.forwarder.plain_sockets:  # sockets opened elsewhere (takeover): a task
            self.spawn(asyncio.get_running_loop().create_task(self._forward_to(request, send)))
            return

        if not self._take(request.client):
            send(self.handler.error_reply(query, REFUSED, False))
            return

        def deliver(reply: bytes | None) -> None:
            self._give_back(request.client)
            send(reply if reply is not None else self.handler.error_reply(query, SERVFAIL, False))

        try:
            self.forwarder.forward_udp(query, request.data, deliver)
        except ForwardRefused:
            self._give_back(request.client)
            self._over_cap.warning("more than %d forwards in flight: REFUSED %s",
                                   self.forwarder.in_flight, query.qname)
            send(self.handler.error_reply(query, REFUSED, False))

    async def _forward_to(self, request: Forward, send: Callable[[bytes], None]) -> None:
        send(await self._forward(request, tcp=False))  # `send` counts it

    def spawn(self, task: asyncio.Task[Any]) -> None:
        # Keep a hard reference so the task is not garbage-collected mid-flight.
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def _counted(send: Callable[[bytes], None], stats: QueryStats, lock: AbstractContextManager[Any],
             data: bytes, source: str) -> Callable[[bytes], None]:
    def counted(reply: bytes) -> None:
        how = How.REFUSED if reply[3] & 0x0F == REFUSED else How.FORWARDED
        with lock:  # the UDP receive thread counts too
            stats.note(data, source, False, reply, how)
        send(reply)
    return counted
