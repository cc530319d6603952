# The composition root: one name table, its handler and forwarder, the UDP and TCP listeners on
# every --listen address, and the state source feeding the table. Start, serve, close.
from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

from resolver.answer import Policy
from resolver.config import Config
from resolver.forward import Forwarder
from resolver.handler import Handler
from resolver.ratelimit import RateLimiter
from resolver.table import NameTable
from resolver.tcp import TcpClients, TcpConnection
from resolver.transport import Resolution
from resolver.udp import UdpListener
from resolver.views import HostViewPolicy

log = logging.getLogger(__name__)


# `--listen HOST:0` (tests, benchmarks): tries to find one port free for both UDP and TCP.
PORT_ZERO_TRIES = 10


# The UDP receive buffer: the kernel default (208 KiB, ~270 small datagrams) overflows during a
# burst of a few milliseconds at 20k qps and queries are lost; 4 MiB rides out ~100 ms.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024


def enlarge_receive_buffer(sock: socket.socket, size: int) -> None:
    """Ask for `size` bytes; as root past net.core.rmem_max (SO_RCVBUFFORCE), else up to it."""
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            break
        except OSError:
            continue
    log.debug("udp receive buffer: %d bytes", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


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
        limiter = None
        if config.rate_limit > 0:
            limiter = RateLimiter(config.rate_limit, config.rate_limit_burst, clock=time.monotonic)
        self.handler = Handler(self.table, policy, limiter)
        forwarder = None
        if config.upstreams:
            forwarder = Forwarder(config.upstreams, config.upstream_timeout,
                                  config.upstream_budget, config.max_forwards)
        self.resolution = Resolution(self.handler, forwarder)
        self.tcp_clients = TcpClients(config.tcp_max_connections, config.tcp_max_per_source)
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
        """Port 0: the kernel picks a free UDP port, which TCP may hold already (a client's
        ephemeral port): then try another, a few times."""
        for _ in range(PORT_ZERO_TRIES - 1 if port == 0 else 0):
            try:
                return await self._bind_both(host, port)
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise
        return await self._bind_both(host, port)

    async def _bind_both(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
            enlarge_receive_buffer(sock, UDP_RECEIVE_BUFFER)
            udp, _ = await loop.create_datagram_endpoint(
                lambda: UdpListener(self.resolution), sock=sock)
        except OSError:
            sock.close()
            raise
        port = udp.get_extra_info("sockname")[1]
        config = self.config
        try:
            tcp = await loop.create_server(
                lambda: TcpConnection(self.resolution, self.tcp_clients, config.tcp_idle),
                host, port, family=family, reuse_address=True, backlog=1024)
        except OSError:
            udp.close()
            raise
        self._closers += [udp.close, tcp.close]
        log.info("listening on %s port %d (udp, tcp)", host, port)
        return host, port

    async def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()
        for connection in self.tcp_clients:
            connection.close()
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
