# The composition root (docs/design.md): from one Config, the name table, its handler and
# forwarder, the UDP and TCP listeners on every --listen address, and the state source that
# feeds the table; `serve` runs them until SIGINT/SIGTERM, freezing the heap after each full
# load of the table (resolver/heap.py). The check that no upstream is ourselves lives here,
# where the listen addresses are bound.
from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from resolver import mmsg
from resolver.answer import AliasOrder, Policy
from resolver.cache import AnswerCache
from resolver.config import Config
from resolver.exchange import Upstream
from resolver.forward import Forwarder
from resolver.handler import Handler
from resolver.heap import HeapSettler
from resolver.loopcheck import forwards_to_itself
from resolver.metrics import Metrics
from resolver.ratelimit import RateLimiter
from resolver.sources import (
    SourceError,
    StateSource,
    describe_source,
    open_source,
    stopped_lookup,
)
from resolver.stats import EngineStats, QueryStats
from resolver.table import NameTable
from resolver.tcp import TcpClients, TcpConnection
from resolver.transport import Resolution
from resolver.udp import UdpListener
from resolver.udp_batch import BatchReceiver
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


def batch_receive(config: Config) -> bool:
    """--udp-io batch, where libc has recvmmsg and sendmmsg (else the loop reads UDP)."""
    if config.udp_io != "batch":
        return False
    if not mmsg.available():
        log.warning("--udp-io batch: this libc has no recvmmsg/sendmmsg; the event loop "
                    "reads UDP")
        return False
    return True


def per_client_forwards(max_forwards: int) -> int:
    """One client holds at most a quarter of --max-forwards (docs/forwarding.md)."""
    return max(1, max_forwards // 4)


class StartError(Exception):
    """The server cannot start; the message is one line. `exit_code` for the command line."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ListenError(StartError):
    """A --listen address could not be bound."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)


def build_table(config: Config) -> NameTable:
    return NameTable(HostViewPolicy(config.host_view_from))


class Server:
    def __init__(self, config: Config, table: NameTable | None = None) -> None:
        self.config = config
        self.table = table if table is not None else build_table(config)
        policy = Policy(ttl=config.ttl, alias_order=AliasOrder(config.alias_order),
                        domain=config.domain, forwarding=bool(config.upstreams),
                        health=not config.ignore_health)
        limiter = None
        if config.rate_limit > 0:
            limiter = RateLimiter(config.rate_limit, config.rate_limit_burst, clock=time.monotonic)
        cache = AnswerCache(config.cache_size) if config.upstreams and config.cache_size else None
        self.policy = policy
        # Queries are counted when someone reads the counts (docs/operations.md).
        stats = QueryStats() if config.http or config.log_queries else None
        self.handler = Handler(self.table, policy, limiter, cache, stats)
        # What /metrics shows: features register their counters here (resolver/metrics.py).
        self.metrics = Metrics()
        forwarder = None
        if config.upstreams:
            forwarder = Forwarder([Upstream(*u) for u in config.upstreams],
                                  config.upstream_timeout,
                                  config.upstream_budget, config.max_forwards, cache=cache,
                                  cache_lock=self.handler.lock)
        self.resolution = Resolution(self.handler, forwarder,
                                     per_client=per_client_forwards(config.max_forwards))
        self.tcp_clients = TcpClients(config.tcp_max_connections, config.tcp_max_per_source)
        self._closers: list[Callable[[], Any]] = []
        self.addresses: list[tuple[str, int]] = []
        # --udp-io batch: one thread reads every UDP listener (resolver/udp_batch.py).
        self.udp_receiver = BatchReceiver() if batch_receive(config) else None

    async def start(self) -> None:
        """Bind UDP and TCP on every listen address (port 0: one free port for both), then
        refuse an upstream that is one of them (a forwarding loop)."""
        for host, port in self.config.listen:
            try:
                self.addresses.append(await self._bind(host, port))
            except OSError as error:
                await self.close()
                reason = error.strerror or error
                raise ListenError(f"cannot listen on {host}:{port}: {reason}") from None
        for upstream in self.config.upstreams:
            if forwards_to_itself(Upstream(*upstream), self.addresses):
                await self.close()
                raise StartError(f"upstream {Upstream(*upstream)} is this server itself: "
                                 "a forwarding loop")
        for host, port in self.addresses:
            log.info("listening on %s port %d (udp, tcp)", host, port)
        upstreams = ", ".join(str(Upstream(*u)) for u in self.config.upstreams)
        log.info("upstreams: %s", upstreams or "none (misses get NXDOMAIN)")

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
            if self.udp_receiver is not None:
                close_udp = self.udp_receiver.add(sock, self.resolution)
            else:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: UdpListener(self.resolution), sock=sock)
                close_udp = udp.close
        except OSError:
            sock.close()
            raise
        port = sock.getsockname()[1]
        config = self.config
        try:
            tcp = await loop.create_server(
                lambda: TcpConnection(self.resolution, self.tcp_clients, config.tcp_idle),
                host, port, family=family, reuse_address=True, backlog=1024)
        except OSError:
            close_udp()
            raise
        self._closers += [close_udp, tcp.close]
        return host, port

    async def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()
        if self.udp_receiver is not None:
            self.udp_receiver.close()
        for connection in self.tcp_clients:
            connection.close()
        if self.resolution.forwarder is not None:
            self.resolution.forwarder.close()
        for task in list(self.resolution.tasks):
            task.cancel()
        if self.resolution.tasks:
            await asyncio.gather(*self.resolution.tasks, return_exceptions=True)


async def run_until_stopped(server: Server, source: StateSource, stop: asyncio.Event) -> None:
    """Serve until `stop` is set; the state source feeds the table beside the listeners."""
    await server.start()
    feeding = asyncio.create_task(source.run(), name="state-source")
    try:
        await stop.wait()
    finally:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        await source.close()
        await server.close()


async def serve(config: Config) -> None:
    """`scopedns serve`: everything `config` asks for, until SIGINT or SIGTERM; SIGHUP reloads
    the state source. Raises StartError when it cannot start."""
    server = Server(config)
    HeapSettler(server.table)  # collect and freeze after each full load (resolver/heap.py)
    engine = None if config.snapshot else EngineStats()  # read by --http (docs/operations.md)
    try:
        source = open_source(config, server.table, engine, server.metrics, server.handler.stats,
                             server.udp_receiver)
    except SourceError as error:
        raise StartError(str(error)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, source.reload)
    from resolver.http import start_http  # --http, --log-queries (docs/operations.md)

    http = await start_http(server, engine, describe_source(config), stopped_lookup(config))
    try:
        await run_until_stopped(server, source, stop)
    finally:
        if http is not None:
            await http.close()
