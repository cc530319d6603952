# `serve --takeover` (docs/takeover.md): which containers get scopedns as their 127.0.0.11, and
# keeping that true while the engine changes. Every running container with an endpoint on a
# user-defined network is taken over when it starts or connects, released when it stops or
# leaves its last user-defined network, and checked again on every event about it and on a
# timer (Docker may move its resolver; someone may flush our table). On the way out every
# namespace is handed back. `scopedns release` (release_leftovers) removes what a run that
# could not clean up left, with no server and no engine needed.
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from resolver.config import Config
from resolver.metrics import LabelledCounts
from resolver.netns import NamespaceError, NamespaceWorker
from resolver.nftables import NftablesError, reserve_low_descriptors
from resolver.stats import Histogram, QueryStats
from resolver.table import NameTable
from resolver.takeover import (
    Client,
    Diversion,
    TakeoverError,
    host_firewall_flavour,
    shared_parts,
)
from resolver.udp_batch import BatchReceiver
from watchers.engine_api import (
    ENGINE_ERRORS,
    EventStream,
    Lookup,
    close_quietly,
    describe,
    inspect_one,
    list_engine,
    open_docker,
    show_network,
)
from watchers.takeover_plan import (
    Skip,
    Target,
    endpoint_address,
    labels_allow,
    namespace_files,
    new_namespace_with,
    plan,
    raise_descriptor_limit,
)
from watchers.translate import EventKind, classify_event, event_time_nano

log = logging.getLogger(__name__)

# How often every taken-over namespace is checked (our table there, Docker's ports).
RECHECK_INTERVAL = 60.0
BACKOFF_INITIAL, BACKOFF_MAX = 0.5, 30.0
SYNC_POLL = 0.05
# Descriptors per taken-over container: namespace, netlink, UDP and TCP listeners, plus
# connections; the soft limit is raised to the hard one at start-up.
FDS_PER_CONTAINER = 4
FLUSH_THREADS = 2
# The early path (_early) looks for a new container's namespace this long after its join.
EARLY_WINDOW, EARLY_POLL = 10.0, 0.01
# A take that failed (most often: Docker has not put its own 127.0.0.11 rules in place yet) is
# tried again this often, this many times, rather than waiting for the next recheck.
RETRY_DELAY, RETRY_ATTEMPTS = 0.5, 20
# scopedns_takeover_latency_seconds: engine event to diversion in place. The early path takes
# over ~1 s after the connect event (Docker's namespace and rules come then), a start event's
# inspect in tens of ms, a retried take within RETRY_DELAY * RETRY_ATTEMPTS.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


_CONTAINER_EVENTS = frozenset({EventKind.REMOVE_CONTAINER, EventKind.REFRESH_CONTAINER,
                               EventKind.LEAVE_NETWORK})


class TakeoverManager:
    """Takes over, checks and hands back every eligible container's 127.0.0.11."""

    def __init__(self, table: NameTable, config: Config,
                 worker: NamespaceWorker | None = None, stats: QueryStats | None = None,
                 udp_receiver: BatchReceiver | None = None) -> None:
        """`udp_receiver`: the thread that reads the containers' UDP listeners (--udp-io
        batch); None: the event loop reads them."""
        self._table = table
        self._url = config.docker
        self._only = config.takeover_only
        self._worker = worker or NamespaceWorker()
        self._flusher = NamespaceWorker(threads=FLUSH_THREADS)
        limit = raise_descriptor_limit()
        held = reserve_low_descriptors()
        log.info("takeover: descriptor limit %d (about 4 per container); %d low descriptors "
                 "lent to nftables one command at a time", limit, held)
        flavour = host_firewall_flavour()
        log.info("takeover: host iptables flavour %s; diversions are nftables tables ahead of "
                 "Docker's rules either way", flavour)
        # `stats`: the server's own, so /metrics and --log-queries see these queries too
        self._shared = shared_parts(table, config, self._worker, self._flusher,
                                    legacy_iptables=flavour == "legacy", stats=stats,
                                    udp_receiver=udp_receiver)
        self.diversions: dict[str, Diversion] = {}
        # Replaced by /metrics' own when served (watchers/takeover_source.py).
        self.outcomes = LabelledCounts(("outcome",))
        self.latency = Histogram(LATENCY_BUCKETS)
        self._locks: dict[str, asyncio.Lock] = {}
        self._queued: dict[str, int] = {}  # work queued or running per container
        self._left_alone: dict[str, str] = {}  # logged once per container and reason
        self._labels: dict[str, Mapping[str, Any]] = {}  # from events and inspects
        # Running already (an inspect, or a start event): a `network connect` of one joins no
        # new namespace, so the early path would wait its whole window, holding the lock.
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._retries: set[asyncio.Task[None]] = set()  # waiting to try a failed take again
        self._reconciled = False  # the current engine connection got as far as a reconcile

    async def run(self) -> None:
        """Follow the engine until cancelled, then hand every namespace back."""
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
            # A cycle that reconciled was connected: the next outage backs off from the start.
            delay = BACKOFF_INITIAL if self._reconciled else min(delay * 2, BACKOFF_MAX)
            self._reconciled = False

    async def _cycle(self) -> None:
        docker: Any = open_docker(self._url)
        events: EventStream | None = None
        try:
            filters = {"type": ["container", "network"]}
            # Raw events: their attributes carry the container's labels.
            events = EventStream(docker, docker.events.subscribe(filters=filters))
            await self._reconcile(docker)
            self._reconciled = True
            checked = time.monotonic()
            while True:
                wait = max(0.0, checked + RECHECK_INTERVAL - time.monotonic())
                event = await events.next(wait)
                if time.monotonic() >= checked + RECHECK_INTERVAL:
                    await self._reconcile(docker)  # on a timer, however busy the events are
                    checked = time.monotonic()
                if event is not None:
                    self._on_event(docker, event)
        finally:
            if events is not None:
                events.close()
            await close_quietly(docker)

    def _on_event(self, docker: Any, event: Mapping[str, Any]) -> None:
        """Whatever the event, the engine's state then decides (an inspect): events of a
        restart arrive as kill, die, start, and acting on a `die` read after the new start
        would hand back a namespace just taken over. A `network connect` of a container not
        held yet is also taken over at once, before its start ends (_early)."""
        action = classify_event(event)
        cid = action.container_id
        nano = event_time_nano(event)
        at = nano / 1e9 if nano is not None else None
        actor = event.get("Actor")
        attributes = actor.get("Attributes") if isinstance(actor, Mapping) else None
        if event.get("Type") == "container" and isinstance(attributes, Mapping):
            actor_id = str(actor.get("ID") or "") if isinstance(actor, Mapping) else ""
            if event.get("Action") == "destroy":
                self._labels.pop(actor_id, None)
            elif actor_id:
                self._labels[actor_id] = attributes  # an event carries the container's labels
            if event.get("Action") == "start":
                self._running.add(actor_id)
            elif event.get("Action") in ("die", "destroy"):
                self._running.discard(actor_id)
        if event.get("Type") == "network" and event.get("Action") == "connect" and cid \
                and cid not in self.diversions:
            self._spawn(cid, partial(self._early, docker, cid, action.network_id, at))
        if action.kind in _CONTAINER_EVENTS:
            self._spawn(cid, partial(self._refresh, docker, cid, at))

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
        self._queued[cid] = self._queued.get(cid, 0) + 1

        async def locked() -> None:
            try:
                async with lock:
                    await work()
            except ENGINE_ERRORS as error:  # the engine went away meanwhile: the reconcile
                log.debug("takeover: %s: engine: %s", cid[:12], describe(error))  # after it
            finally:
                left = self._queued[cid] - 1
                if left:
                    self._queued[cid] = left
                else:  # nothing else waits on this lock: forget it
                    del self._queued[cid]
                    self._locks.pop(cid, None)

        task = asyncio.create_task(locked())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for the per-container work in flight (tests, reconcile)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _early(self, docker: Any, cid: str, network_id: str, at: float | None) -> None:
        """Take over at the endpoint's join, before the container's process runs: its inspect
        waits until the start is over, but the network's inspect gives its address now; the
        namespace is the Docker namespace file that appears after the join (Docker makes it
        just after the `connect` event) with that address, once Docker's 127.0.0.11 rules
        are in it. Only for containers whose labels we know (from their events) allow it;
        whatever is missing is left to the start event's inspect."""
        labels = self._labels.get(cid)
        if cid in self.diversions or cid in self._running or labels is None \
                or not labels_allow(labels, self._only):
            return
        others = set(namespace_files())  # there before the join: other containers'
        network = await inspect_one(show_network(docker, network_id), f"network {network_id}")
        address = endpoint_address(network, cid) if isinstance(network, Mapping) else ""
        if not address:
            return
        name = str(labels.get("name") or cid[:12])
        deadline = time.monotonic() + EARLY_WINDOW
        while cid not in self.diversions and time.monotonic() < deadline:
            path = await new_namespace_with(self._worker, address, others)
            if path is not None and await self.take(Target(cid, name, path, address, at), True):
                return
            await asyncio.sleep(EARLY_POLL)

    async def _refresh(self, docker: Any, cid: str, at: float | None = None) -> None:
        data = await inspect_one(docker.containers.container(cid).show(), f"container {cid}")
        if data is Lookup.GONE:
            await self._release(cid, "gone")
        elif isinstance(data, Mapping):
            await self._apply(data, check=True, at=at)

    async def _apply(self, inspect: Mapping[str, Any], check: bool,
                     at: float | None = None) -> None:
        """`at`: the time of the engine event this inspect answers (None: a listing)."""
        target = plan(inspect, self._only)
        if isinstance(target, Target) and at is not None:
            target = dataclasses.replace(target, event_at=at)
        cid = str(inspect.get("Id") or "")
        config = inspect.get("Config")
        labels = config.get("Labels") if isinstance(config, Mapping) else None
        self._labels[cid] = {**(labels if isinstance(labels, Mapping) else {}),
                             "name": str(inspect.get("Name") or "").lstrip("/")}
        state = inspect.get("State")
        if isinstance(state, Mapping) and state.get("Running"):
            self._running.add(cid)
        else:
            self._running.discard(cid)
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
            if not await self.take(target):
                self._retry_later(target, 1)
            return
        held.client.source = target.client
        if check:
            try:
                await held.check()
            except (NftablesError, NamespaceError, OSError) as error:
                log.warning("takeover: %s: check failed: %s", target.name, error)

    def _retry_later(self, target: Target, attempt: int) -> None:
        """Try `target` again after RETRY_DELAY, without holding its lock while waiting."""
        if attempt > RETRY_ATTEMPTS:
            return

        async def wait_then_retry() -> None:
            await asyncio.sleep(RETRY_DELAY)
            self._spawn(target.container_id, partial(self._retry, target, attempt))

        task = asyncio.create_task(wait_then_retry())
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _retry(self, target: Target, attempt: int) -> None:
        if target.container_id in self.diversions or target.container_id not in self._labels:
            return  # taken meanwhile, or destroyed
        last = attempt >= RETRY_ATTEMPTS  # said at warning level: left to Docker until a recheck
        if not await self.take(target, quiet=not last):
            self._retry_later(target, attempt + 1)

    async def take(self, target: Target, quiet: bool = False) -> bool:
        """Take one container over; a failure leaves it to Docker (one log line, debug when
        `quiet`: the early path tries before Docker has finished)."""
        report = log.debug if quiet else log.warning
        try:
            namespace = self._worker.open(target.sandbox_key)
        except NamespaceError as error:
            report("takeover: %s: %s", target.name, error)
            return False
        diversion = Diversion(target.container_id, target.name, namespace,
                              Client(target.client), self._shared)
        try:
            await diversion.take()
        except (TakeoverError, NamespaceError, NftablesError, OSError) as error:
            namespace.close()
            report("takeover: %s left to Docker: %s", target.name, error or repr(error))
            if isinstance(error, TakeoverError) and error.detail and not quiet:
                log.debug("takeover: %s: what its namespace holds:\n%s", target.name,
                          error.detail)
            self.outcomes.inc("failed")
            return False
        self.diversions[target.container_id] = diversion
        if target.event_at is not None:  # before the count: a scrape sees both or neither
            self.latency.observe(max(0.0, time.time() - target.event_at))
        self.outcomes.inc("taken")
        docker = diversion.docker
        log.debug("takeover: %s taken over (udp %d, tcp %d; Docker's resolver udp %d, tcp %d)",
                  target.name, *diversion.ports, docker.udp if docker else 0,
                  docker.tcp if docker else 0)
        await diversion.flush()
        return True

    async def _release(self, cid: str, why: str) -> None:
        self._left_alone.pop(cid, None)
        diversion = self.diversions.pop(cid, None)
        if diversion is not None:
            await diversion.release()
            self.outcomes.inc("handed_back")
            log.debug("takeover: %s handed back (%s)", diversion.name, why)

    async def release_all(self) -> None:
        for task in [*self._retries, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._retries, *self._tasks, return_exceptions=True)
        held = list(self.diversions.values())
        self.diversions.clear()
        # Every table first (Docker answers everyone again), then the slow conntrack flushes.
        await asyncio.gather(*(d.unhook() for d in held), return_exceptions=True)
        await asyncio.gather(*(d.flush() for d in held), return_exceptions=True)
        for diversion in held:
            diversion.close()
        if held:
            self.outcomes.inc("handed_back", by=len(held))
            log.info("takeover: %d containers handed back to Docker's resolver", len(held))

