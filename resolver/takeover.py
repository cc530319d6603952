# One container's 127.0.0.11 taken over (docs/takeover.md): UDP and TCP listeners bound to
# 127.0.0.11 on ports of our own inside the container's namespace, an nftables table there that
# diverts 127.0.0.11:53 to them ahead of Docker's DNAT, and a forwarder that sends names that
# are not local to Docker's own resolver in the same namespace. The socket says who is asking:
# every query on these listeners is asked as the container's endpoint address (`Client`), so
# views, TCP caps and rate limits key on the container. Handing back removes the table first,
# then deletes the UDP conntrack entries, then closes the sockets.
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from resolver.answer import AliasOrder, Policy
from resolver.config import Config
from resolver.conntrack import delete_flows
from resolver.divert import (
    DELETE_TABLE,
    DOCKER_DNS,
    LIST_NAT,
    LIST_TABLES,
    DockerPorts,
    divert_ruleset,
    docker_ports,
    firewall_flavour,
    has_our_table,
    missing_diversion_reason,
    our_diversion_ports,
)
from resolver.exchange import Upstream
from resolver.forward import Forwarder, InFlight
from resolver.handler import Forward, Handler
from resolver.netns import Namespace, NamespaceError, NamespaceWorker
from resolver.nftables import NftablesError, NftContext
from resolver.ratelimit import RateLimiter
from resolver.stats import QueryStats
from resolver.table import NameTable
from resolver.tcp import TcpClients, TcpConnection
from resolver.transport import Resolution
from resolver.udp import UdpListener
from resolver.udp_batch import BatchReceiver

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 128


class TakeoverError(Exception):
    """This container cannot be taken over; the message says why (one log line), `detail` what
    was read there (for a debug log)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


@dataclass
class Client:
    """Who is asking on a container's listeners: its endpoint address (it may change)."""

    source: str


class TakeoverUdpListener(UdpListener):
    def __init__(self, resolution: Resolution, client: Client) -> None:
        super().__init__(resolution)
        self._client = client

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        outcome = self._handle(data, self._client.source, False)
        if isinstance(outcome, bytes):
            self._sendto(outcome, addr)
        elif outcome is not None:
            task = asyncio.get_running_loop().create_task(self._forward(outcome, addr))
            self._resolution.spawn(task)

    async def _forward(self, request: Forward, addr: tuple[Any, ...]) -> None:
        await super()._forward(request, addr)


class TakeoverTcpConnection(TcpConnection):
    def __init__(self, resolution: Resolution, clients: TcpClients, idle_timeout: float,
                 client: Client) -> None:
        super().__init__(resolution, clients, idle_timeout)
        self.client = client

    def client_of(self, peer: tuple[object, ...] | None) -> str:
        return self.client.source


@dataclass(frozen=True)
class Shared:
    """What every diversion shares: the namespace threads, the takeover handler's resolution
    parts, the TCP caps, the forward caps and the forwarding timeouts."""

    worker: NamespaceWorker
    # conntrack dumps walk the host's whole conntrack table (tens of ms): their own threads,
    # so they never hold up a takeover or a hand-back.
    flusher: NamespaceWorker
    make_resolution: Callable[[Forwarder], Resolution]
    tcp_clients: TcpClients
    tcp_idle: float
    total_forwards: InFlight
    client_forwards: int
    upstream_timeout: float
    upstream_budget: float
    legacy_iptables: bool = False  # Docker's rules are then read with iptables-save
    # --udp-io batch: the thread that reads every container's UDP listener; None: the loop.
    udp_receiver: BatchReceiver | None = None


def shared_parts(table: NameTable, config: Config, worker: NamespaceWorker,
                 flusher: NamespaceWorker, legacy_iptables: bool,
                 stats: QueryStats | None = None,
                 udp_receiver: BatchReceiver | None = None) -> Shared:
    """What the diversions of one `serve --takeover` share, from its configuration: the
    takeover handler answers with the same policy and rate limit as the host listener, and
    counts into `stats` (the server's own, for /metrics and --log-queries)."""
    policy = Policy(ttl=config.ttl, alias_order=AliasOrder(config.alias_order),
                    domain=config.domain, forwarding=not config.no_upstream,
                    health=not config.ignore_health)
    limiter = None
    if config.rate_limit > 0:
        limiter = RateLimiter(config.rate_limit, config.rate_limit_burst, clock=time.monotonic)
    handler = Handler(table, policy, limiter, stats=stats)
    return Shared(
        worker=worker,
        flusher=flusher,
        make_resolution=lambda forwarder: Resolution(handler, forwarder),
        tcp_clients=TcpClients(config.tcp_max_connections, config.tcp_max_per_source),
        tcp_idle=config.tcp_idle,
        total_forwards=InFlight(config.max_forwards),
        client_forwards=max(1, config.max_forwards // 4),
        upstream_timeout=config.upstream_timeout,
        upstream_budget=config.upstream_budget,
        legacy_iptables=legacy_iptables,
        udp_receiver=udp_receiver)


@dataclass
class _Prepared:
    nft: NftContext
    udp: socket.socket
    tcp: socket.socket
    docker: DockerPorts


def _bind_listeners() -> tuple[socket.socket, socket.socket]:
    """UDP and TCP on 127.0.0.11, one port for both when the kernel allows (never 53: the
    container may serve DNS itself on 0.0.0.0:53)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((DOCKER_DNS, 0))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((DOCKER_DNS, udp.getsockname()[1]))
        except OSError:
            tcp.bind((DOCKER_DNS, 0))
        tcp.listen(LISTEN_BACKLOG)
        udp.setblocking(False)
        tcp.setblocking(False)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


def _read_docker_ports(ruleset: str, legacy: bool) -> DockerPorts | None:
    """Docker's DNAT ports, from the namespace's nftables `ruleset` (iptables-nft, the nftables
    backend) or, on a host whose iptables is the legacy flavour, from iptables-save; runs
    inside the namespace."""
    found = docker_ports(ruleset)
    if found is None and legacy:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            saved = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True,
                                   text=True, timeout=5, check=False)
            found = docker_ports(saved.stdout)
    return found


def host_firewall_flavour() -> str:
    """The flavour of the host's iptables, which Docker 20.10 uses for 127.0.0.11."""
    try:
        shown = subprocess.run(["iptables", "--version"], capture_output=True, text=True,
                               timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return firewall_flavour(shown.stdout + shown.stderr)


def _prepare_in_namespace(legacy: bool) -> _Prepared:
    """Inside the namespace: the nftables context, our listeners, Docker's ports, our table.
    A table of ours left there by a run that could not own it is replaced."""
    nft = NftContext()
    udp = tcp = None
    try:
        ruleset = nft.run(LIST_NAT)
        docker = _read_docker_ports(ruleset, legacy)
        if docker is None:
            warnings = f"nft also said: {nft.warnings}\n" if nft.warnings else ""
            raise TakeoverError(missing_diversion_reason(ruleset), warnings + ruleset)
        udp, tcp = _bind_listeners()
        if has_our_table(nft.run(LIST_TABLES)):
            nft.run(DELETE_TABLE)
        nft.run(divert_ruleset(udp.getsockname()[1], tcp.getsockname()[1]))
        nft.release_cache()
        return _Prepared(nft, udp, tcp, docker)
    except NftablesError as error:
        _close_all(nft, udp, tcp)
        raise TakeoverError(f"nftables: {error}") from None
    except BaseException:
        _close_all(nft, udp, tcp)
        raise


def _close_all(nft: NftContext, *sockets: socket.socket | None) -> None:
    nft.close()
    for sock in sockets:
        if sock is not None:
            sock.close()


@dataclass
class Diversion:
    """One container's namespace, taken over."""

    container_id: str
    name: str
    namespace: Namespace
    client: Client
    shared: Shared
    nft: NftContext | None = None
    docker: DockerPorts | None = None
    ports: tuple[int, int] = (0, 0)
    resolution: Resolution | None = None
    _closers: list[Callable[[], Any]] = field(default_factory=list)

    async def take(self) -> None:
        """Listen and divert: from here on, new flows to 127.0.0.11:53 reach us (flush() then
        moves the flows that exist already)."""
        shared, loop = self.shared, asyncio.get_running_loop()
        prepared = await shared.worker.run(self.namespace,
                                           partial(_prepare_in_namespace, shared.legacy_iptables))
        self.nft, self.docker = prepared.nft, prepared.docker
        self.ports = (prepared.udp.getsockname()[1], prepared.tcp.getsockname()[1])
        resolution = shared.make_resolution(self._forwarder(prepared.docker))
        self.resolution = resolution
        try:
            if shared.udp_receiver is not None:
                self._closers.append(shared.udp_receiver.add(prepared.udp, resolution,
                                                             self.client))
            else:
                udp, _ = await loop.create_datagram_endpoint(
                    lambda: TakeoverUdpListener(resolution, self.client), sock=prepared.udp)
                self._closers.append(udp.close)
            tcp = await loop.create_server(
                lambda: TakeoverTcpConnection(resolution, shared.tcp_clients, shared.tcp_idle,
                                              self.client), sock=prepared.tcp)
            self._closers.append(tcp.close)
        except BaseException:
            prepared.udp.close()
            prepared.tcp.close()
            await self.release(flush=False)
            raise

    async def flush(self) -> None:
        """UDP flows to 127.0.0.11:53 that exist already are NATed afresh on their next query
        (after take(): to us; after the table went: back to Docker). Logged, never raised."""
        try:
            deleted = await self.shared.flusher.run(self.namespace, delete_flows)
        except (OSError, NamespaceError) as error:
            log.warning("takeover: %s: cannot flush conntrack: %s", self.name, error)
            return
        if deleted:
            log.debug("takeover: %s: %d UDP flows to 127.0.0.11:53 moved", self.name, deleted)

    def _forwarder(self, docker: DockerPorts) -> Forwarder:
        """Names that are not local go to Docker's resolver in this very namespace."""
        shared, namespace = self.shared, self.namespace

        async def open_socket(family: int, kind: int) -> socket.socket:
            return await shared.worker.socket_in(namespace, family, kind)

        return Forwarder([Upstream(DOCKER_DNS, docker.udp)], shared.upstream_timeout,
                         shared.upstream_budget, shared.client_forwards, open_socket=open_socket,
                         total=shared.total_forwards,
                         tcp_upstreams=[Upstream(DOCKER_DNS, docker.tcp)])

    async def check(self) -> bool:
        """Re-read the namespace: follow Docker's ports if its resolver moved, and put our
        table back if it is gone. True when something had to be repaired."""
        nft = self.nft
        if nft is None:
            return False

        def inspect() -> tuple[str, DockerPorts | None]:
            ruleset = nft.run(LIST_NAT)
            nft.release_cache()
            return ruleset, docker_ports(ruleset)

        ruleset, docker = await self.shared.worker.run(self.namespace, inspect)
        repaired = False
        if docker is not None and docker != self.docker and self.resolution is not None:
            log.info("takeover: %s: Docker's resolver moved to udp %d, tcp %d",
                     self.name, docker.udp, docker.tcp)
            self.docker = docker
            forwarder = self.resolution.forwarder
            if forwarder is not None:
                forwarder.upstreams = (Upstream(DOCKER_DNS, docker.udp),)
                forwarder.tcp_upstreams = (Upstream(DOCKER_DNS, docker.tcp),)
            repaired = True
        if our_diversion_ports(ruleset) != self.ports:
            log.warning("takeover: %s: our diversion was missing or changed; restored", self.name)
            command = (DELETE_TABLE if has_our_table(nft.run(LIST_TABLES)) else "")
            await self.shared.worker.run(
                self.namespace, lambda: nft.run(command + divert_ruleset(*self.ports)))
            nft.release_cache()
            await self.flush()
            repaired = True
        return repaired

    async def release(self, flush: bool = True) -> None:
        """Hand back: our table goes (Docker's rules apply again at once), stale UDP flows are
        flushed, then our sockets close."""
        await self.unhook()
        if flush:
            await self.flush()
        self.close()

    async def unhook(self) -> None:
        """Delete our table; Docker's diversion applies to new flows at once."""
        nft, self.nft = self.nft, None
        if nft is None:
            return

        def remove() -> None:
            with contextlib.suppress(NftablesError):
                nft.run(DELETE_TABLE)
            nft.close()

        try:
            await self.shared.worker.run(self.namespace, remove)
        except Exception as error:  # the namespace may be gone: freeing the context is enough
            log.debug("takeover: %s: removing our table: %s", self.name, error)
            nft.close()

    def close(self) -> None:
        """Close our listeners and connections, and the namespace (it may go now)."""
        for close in reversed(self._closers):
            close()
        self._closers.clear()
        if self.resolution is not None:
            for task in list(self.resolution.tasks):
                task.cancel()
        for connection in self.shared.tcp_clients:
            if isinstance(connection, TakeoverTcpConnection) and connection.client is self.client:
                connection.close()
        self.namespace.close()
