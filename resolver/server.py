# The composition root: one name table, its handler and forwarder, the UDP and TCP listeners on
# every --listen address, and the state source feeding the table. Start, serve, close.
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from resolver.answer import Policy
from resolver.config import Config
from resolver.forward import Forwarder
from resolver.handler import Handler
from resolver.table import NameTable
from resolver.tcp import TcpConnection
from resolver.transport import Resolution
from resolver.udp import UdpListener
from resolver.views import HostViewPolicy

log = logging.getLogger(__name__)


class ListenError(Exception):
    """A --listen address could not be bound."""


def build_table(config: Config) -> NameTable:
    return NameTable(HostViewPolicy(config.host_view_from))


class Server:
    def __init__(self, config: Config, table: NameTable | None = None) -> None:
        self.config = config
        self.table = table if table is not None else build_table(config)
        policy = Policy(ttl=config.ttl, alias_order=config.alias_order,
                        domain=config.domain, forwarding=bool(config.upstreams))
        self.handler = Handler(self.table, policy)
        forwarder = None
        if config.upstreams:
            forwarder = Forwarder(config.upstreams, config.upstream_timeout,
                                  config.upstream_budget, config.max_forwards)
        self.resolution = Resolution(self.handler, forwarder)
        self._closers: list[Callable[[], Any]] = []
        self.addresses: list[tuple[str, int]] = []

    async def start(self) -> None:
        """Bind UDP and TCP on every listen address (port 0: one free port for both)."""
        for host, port in self.config.listen:
            try:
                self.addresses.append(await self._bind(host, port))
            except OSError as error:
                await self.close()
                reason = error.strerror or error
                raise ListenError(f"cannot listen on {host}:{port}: {reason}") from None

    async def _bind(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        udp, _ = await loop.create_datagram_endpoint(
            lambda: UdpListener(self.resolution), local_addr=(host, port), family=family)
        self._closers.append(udp.close)
        port = udp.get_extra_info("sockname")[1]
        config = self.config
        tcp = await loop.create_server(
            lambda: TcpConnection(self.resolution, config.tcp_idle, config.tcp_max_connections,
                                  config.tcp_max_per_source),
            host, port, family=family, reuse_address=True, backlog=1024)
        self._closers.append(tcp.close)
        log.info("listening on %s port %d (udp, tcp)", host, port)
        return host, port

    async def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()
        for task in list(self.resolution.tasks):
            task.cancel()
        if self.resolution.tasks:
            await asyncio.gather(*self.resolution.tasks, return_exceptions=True)


async def run_until_stopped(server: Server,
                            source: Callable[[NameTable], Coroutine[Any, Any, None]],
                            stop: asyncio.Event) -> None:
    """Serve until `stop` is set; the state source runs beside the listeners."""
    await server.start()
    feeding = asyncio.create_task(source(server.table), name="state-source")
    try:
        await stop.wait()
    finally:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        await server.close()
