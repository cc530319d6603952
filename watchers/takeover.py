# `serve --takeover` (docs/takeover.md): which containers get scopedns as their 127.0.0.11, and
# keeping that true while the engine changes. Every running container with an endpoint on a
# user-defined network is taken over when it starts or connects, released when it stops or
# leaves its last user-defined network, and checked again on every event about it and on a
# timer (Docker may move its resolver; someone may flush our table). On the way out every
# namespace is handed back. `scopedns release` (release_leftovers) removes what a run that
# could not clean up left, with no server and no engine needed.
from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiodocker

from resolver.answer import Policy
from resolver.config import Config
from resolver.conntrack import delete_flows
from resolver.divert import DELETE_TABLE, LIST_TABLES, has_our_table
from resolver.forward import InFlight
from resolver.handler import Handler
from resolver.model import PREDEFINED_NETWORKS
from resolver.netns import NamespaceError, NamespaceWorker
from resolver.nftables import NftablesError, NftContext
from resolver.ratelimit import RateLimiter
from resolver.table import NameTable
from resolver.takeover import Client, Diversion, Shared, TakeoverError
from resolver.tcp import TcpClients
from resolver.transport import Resolution
from watchers.engine_api import (
    ENGINE_ERRORS,
    REQUEST_TIMEOUT,
    EventStream,
    Lookup,
    close_quietly,
    describe,
    inspect_one,
    list_engine,
)
from watchers.translate import EventKind

log = logging.getLogger(__name__)

LABEL = "scopedns.takeover"
DOCKER_NETNS_DIR = "/var/run/docker/netns"
# How often every taken-over namespace is checked (our table there, Docker's ports).
RECHECK_INTERVAL = 60.0
BACKOFF_INITIAL, BACKOFF_MAX = 0.5, 30.0
SYNC_POLL = 0.05
# Descriptors per taken-over container: namespace, netlink, UDP and TCP listeners, plus
# connections; the soft limit is raised to the hard one at start-up.
FDS_PER_CONTAINER = 4
FLUSH_THREADS = 2


_CONTAINER_EVENTS = frozenset({EventKind.REMOVE_CONTAINER, EventKind.REFRESH_CONTAINER,
                               EventKind.LEAVE_NETWORK})


@dataclass(frozen=True, slots=True)
class Target:
    container_id: str
    name: str
    sandbox_key: str
    client: str  # an endpoint address of the container: the identity its queries are asked as


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str


def plan(inspect: Mapping[str, Any], only: str | None = None) -> Target | Skip:
    """Whether a container's 127.0.0.11 is ours to answer, from its inspect JSON. `only`
    (--takeover-only LABEL[=VALUE]) limits takeover to containers carrying that label."""
    config = _map(inspect, "Config")
    host = _map(inspect, "HostConfig")
    settings = _map(inspect, "NetworkSettings")
    labels = _map(config, "Labels")
    mode = str(host.get("NetworkMode") or "")
    if not _map(inspect, "State").get("Running"):
        return Skip("not running")
    if str(labels.get(LABEL, "")).strip().lower() in ("false", "0", "no"):
        return Skip(f"label {LABEL}=false")
    if only is not None and not _has_label(labels, only):
        return Skip(f"no label {only} (--takeover-only)")
    if mode == "host":
        return Skip("host network: the host's own resolver, never entered")
    if mode == "none":
        return Skip("network none: no 127.0.0.11")
    if mode.startswith("container:"):
        return Skip("shares another container's namespace: answered as that container")
    networks = _map(settings, "Networks")
    client = ""
    for net_name in sorted(networks):
        endpoint = _map(networks, net_name)
        if net_name in PREDEFINED_NETWORKS:
            continue
        client = str(endpoint.get("IPAddress") or endpoint.get("GlobalIPv6Address") or "")
        if client:
            break
    if not client:
        return Skip("no user-defined network: Docker gives it no 127.0.0.11")
    sandbox_key = str(settings.get("SandboxKey") or "")
    if not sandbox_key:
        return Skip("no network namespace (SandboxKey) yet")
    name = str(inspect.get("Name") or "").lstrip("/")
    return Target(str(inspect.get("Id") or ""), name, sandbox_key, client)


def _has_label(labels: Mapping[str, Any], selector: str) -> bool:
    key, equals, value = selector.partition("=")
    return key in labels and (not equals or str(labels[key]) == value)


def _map(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def raise_descriptor_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            log.warning("takeover: cannot raise the descriptor limit: %s", error)
    return soft


class TakeoverManager:
    """Takes over, checks and hands back every eligible container's 127.0.0.11."""

    def __init__(self, table: NameTable, config: Config,
                 worker: NamespaceWorker | None = None) -> None:
        self._table = table
        self._url = config.docker
        self._only = config.takeover_only
        self._worker = worker or NamespaceWorker()
        self._flusher = NamespaceWorker(threads=FLUSH_THREADS)
        policy = Policy(ttl=config.ttl, alias_order=config.alias_order, domain=config.domain,
                        forwarding=not config.no_upstream)
        limiter = None
        if config.rate_limit > 0:
            limiter = RateLimiter(config.rate_limit, config.rate_limit_burst, clock=time.monotonic)
        handler = Handler(table, policy, limiter)
        self._shared = Shared(
            worker=self._worker,
            flusher=self._flusher,
            make_resolution=lambda forwarder: Resolution(handler, forwarder),
            tcp_clients=TcpClients(config.tcp_max_connections, config.tcp_max_per_source),
            tcp_idle=config.tcp_idle,
            total_forwards=InFlight(config.max_forwards),
            client_forwards=max(1, config.max_forwards // 4),
            upstream_timeout=config.upstream_timeout,
            upstream_budget=config.upstream_budget)
        self.diversions: dict[str, Diversion] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._left_alone: dict[str, str] = {}  # logged once per container and reason
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Follow the engine until cancelled, then hand every namespace back."""
        limit = raise_descriptor_limit()
        log.info("takeover: descriptor limit %d (about %d containers)", limit,
                 limit // FDS_PER_CONTAINER)
        try:
            while not self._table.synced:
                await asyncio.sleep(SYNC_POLL)
            await self._follow()
        finally:
            await self.release_all()
            self._worker.close()
            self._flusher.close()

    async def _follow(self) -> None:
        delay = BACKOFF_INITIAL
        while True:
            try:
                await self._cycle()
            except ENGINE_ERRORS as error:
                log.warning("takeover: engine: %s; again in %.1fs", describe(error), delay)
            except Exception as error:
                log.exception("takeover: unexpected %s; again in %.1fs", error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _cycle(self) -> None:
        docker: Any = aiodocker.Docker(url=self._url, timeout=REQUEST_TIMEOUT)
        events: EventStream | None = None
        try:
            filters = {"type": ["container", "network"]}
            events = EventStream(docker, docker.events.subscribe(filters=filters))
            await self._reconcile(docker)
            checked = time.monotonic()
            while True:
                wait = max(0.0, checked + RECHECK_INTERVAL - time.monotonic())
                action = await events.next(wait)
                if time.monotonic() >= checked + RECHECK_INTERVAL:
                    await self._reconcile(docker)  # on a timer, however busy the events are
                    checked = time.monotonic()
                if action is None:
                    continue
                # Whatever the event, the engine's state now decides (an inspect): events of
                # a restart arrive as kill, die, start, and acting on a `die` read after the
                # new start would hand back a namespace just taken over.
                cid = action.container_id
                if action.kind in _CONTAINER_EVENTS:
                    self._spawn(cid, partial(self._refresh, docker, cid))
        finally:
            if events is not None:
                events.close()
            await close_quietly(docker)

    async def _reconcile(self, docker: Any) -> None:
        """Every running container against what we hold: take the new, release the gone,
        check the rest."""
        listing = await list_engine(docker)
        seen: set[str] = set()
        for inspect in listing.containers:
            cid = str(inspect.get("Id") or "")
            seen.add(cid)
            self._spawn(cid, partial(self._apply, inspect, True))
        for cid in list(self.diversions):
            if cid not in seen:
                self._spawn(cid, partial(self._release, cid, "no longer running"))
        await self.settle()
        log.info("takeover: %d containers taken over", len(self.diversions))

    def _spawn(self, cid: str, work: Callable[[], Awaitable[None]]) -> None:
        """Per-container work runs concurrently with other containers', in order for one."""
        lock = self._locks.setdefault(cid, asyncio.Lock())

        async def locked() -> None:
            async with lock:
                await work()
            if not lock.locked() and cid not in self.diversions:
                self._locks.pop(cid, None)

        task = asyncio.create_task(locked())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for the per-container work in flight (tests, reconcile)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _refresh(self, docker: Any, cid: str) -> None:
        data = await inspect_one(docker.containers.container(cid).show(), f"container {cid}")
        if data is Lookup.GONE:
            await self._release(cid, "gone")
        elif isinstance(data, Mapping):
            await self._apply(data, check=True)

    async def _apply(self, inspect: Mapping[str, Any], check: bool) -> None:
        target = plan(inspect, self._only)
        cid = str(inspect.get("Id") or "")
        held = self.diversions.get(cid)
        if isinstance(target, Skip):
            if held is not None:
                await self._release(cid, target.reason)
            elif self._left_alone.get(cid) != target.reason:
                self._left_alone[cid] = target.reason
                log.debug("takeover: %s left alone: %s", inspect.get("Name"), target.reason)
            return
        self._left_alone.pop(cid, None)
        if held is not None and held.namespace.path != target.sandbox_key:
            await self._release(cid, "new namespace")
            held = None
        if held is None:
            await self.take(target)
            return
        held.client.source = target.client
        if check:
            try:
                await held.check()
            except (NftablesError, NamespaceError, OSError) as error:
                log.warning("takeover: %s: check failed: %s", target.name, error)

    async def take(self, target: Target) -> None:
        """Take one container over; a failure leaves it to Docker (one log line)."""
        try:
            namespace = self._worker.open(target.sandbox_key)
        except NamespaceError as error:
            log.warning("takeover: %s: %s", target.name, error)
            return
        diversion = Diversion(target.container_id, target.name, namespace,
                              Client(target.client), self._shared)
        try:
            await diversion.take()
        except (TakeoverError, NamespaceError, NftablesError, OSError) as error:
            namespace.close()
            log.warning("takeover: %s left to Docker: %s", target.name, error or repr(error))
            return
        self.diversions[target.container_id] = diversion
        docker = diversion.docker
        log.debug("takeover: %s taken over (udp %d, tcp %d; Docker's resolver udp %d, tcp %d)",
                  target.name, *diversion.ports, docker.udp if docker else 0,
                  docker.tcp if docker else 0)
        await diversion.flush()

    async def _release(self, cid: str, why: str) -> None:
        self._left_alone.pop(cid, None)
        diversion = self.diversions.pop(cid, None)
        if diversion is not None:
            await diversion.release()
            log.debug("takeover: %s handed back (%s)", diversion.name, why)

    async def release_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        held = list(self.diversions.values())
        self.diversions.clear()
        # Every table first (Docker answers everyone again), then the slow conntrack flushes.
        await asyncio.gather(*(d.unhook() for d in held), return_exceptions=True)
        await asyncio.gather(*(d.flush() for d in held), return_exceptions=True)
        for diversion in held:
            diversion.close()
        if held:
            log.info("takeover: %d containers handed back to Docker's resolver", len(held))


def release_leftovers(netns_dir: str = DOCKER_NETNS_DIR, only: Sequence[str] = ()
                      ) -> tuple[int, int, list[str]]:
    """`scopedns release`: delete our table from every Docker namespace (or those in `only`)
    that still has one and flush its UDP conntrack entries. (namespaces seen, tables
    removed, problems)."""
    worker = NamespaceWorker(threads=1)
    seen, removed, problems = 0, 0, []
    try:
        paths = list(only)
        if not paths and os.path.isdir(netns_dir):
            paths = [os.path.join(netns_dir, entry) for entry in sorted(os.listdir(netns_dir))]
        for path in paths:
            try:
                namespace = worker.open(path)
            except NamespaceError as error:
                problems.append(str(error))
                continue
            seen += 1
            try:
                if worker.call_in(namespace, _remove_our_table):
                    removed += 1
                    worker.call_in(namespace, delete_flows)
            except (NamespaceError, NftablesError, OSError) as error:
                problems.append(f"{path}: {error}")
            finally:
                namespace.close()
    finally:
        worker.close()
    return seen, removed, problems


def _remove_our_table() -> bool:
    nft = NftContext()
    try:
        if not has_our_table(nft.run(LIST_TABLES)):
            return False
        try:
            nft.run(DELETE_TABLE)
        except NftablesError as error:
            raise NftablesError(f"{error} (owned by a running scopedns? stop it: SIGTERM "
                                "hands back)") from None
        return True
    finally:
        nft.close()

