# The engine's HTTP API as the watcher and `scopedns snapshot` use it: the Engine protocol the
# watcher is written against (so its logic is tested with an in-memory engine, tests/
# memory_engine.py) and DockerEngine, its implementation over aiodocker: the full listing
# (networks, then every running container inspected with bounded concurrency), one object's
# inspect (404 = gone), the engine's clock, the raw event stream read with timeouts that lose
# nothing, and closing quietly. Raw JSON only: translate.py turns it into records and the
# watcher classifies events (docs/failures.md, "engine loss").
from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError
from aiodocker.networks import DockerNetwork

from watchers.translate import engine_time_nano, since_param

log = logging.getLogger("watchers.docker")

# Inspections in flight during a full sync: enough to sync thousands of containers in seconds
# without flooding the engine's API.
INSPECT_CONCURRENCY = 16
# Log full-sync progress every this many containers (a big sync can take a while).
PROGRESS_EVERY = 500
# One API call (not the event stream, which has no deadline) may take this long.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=5)
# aiodocker's status for "could not reach the engine" (a connection error, not an HTTP status).
_UNREACHABLE = 900
_EVENT_FILTERS = {"type": ["container", "network"]}

# What reaching the engine can fail with: aiodocker's errors, aiohttp's, sockets, timeouts.
ENGINE_ERRORS: tuple[type[BaseException], ...] = (
    DockerError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)


def open_docker(url: str | None) -> aiodocker.Docker:
    """aiodocker's client. With no URL aiodocker looks for the engine's socket file and asserts
    that it found one: while dockerd restarts there is none, which is an engine error here (one
    log line, a retry), not an AssertionError with a traceback."""
    try:
        return aiodocker.Docker(url=url, timeout=REQUEST_TIMEOUT)
    except AssertionError:
        raise OSError(errno.ENOENT, "no Docker engine socket (is dockerd running?)") from None


class Lookup(Enum):
    GONE = "gone"  # 404: the object no longer exists
    FAILED = "failed"  # another API error for this one object (logged); leave it as it is


class StreamEnded(Exception):
    """The engine closed the event stream without an error."""


class EventFeed(Protocol):
    """An engine's event stream, in order, from the moment it was subscribed (or `since`)."""

    async def next(self, timeout: float | None) -> Mapping[str, Any] | None:
        """The next raw event, or None after `timeout` seconds without one. Raises StreamEnded
        (or an engine error) when the stream is over."""

    def close(self) -> None: ...


class Engine(Protocol):
    """What the watcher needs of an engine; DockerEngine is the real one."""

    async def now(self) -> int | None:
        """The engine's clock in nanoseconds (events are stamped with it, not ours)."""

    def subscribe(self, since_ns: int | None) -> EventFeed:
        """Container and network events from `since_ns` on (replayed), or from now."""

    async def listing(self, concurrency: int) -> EngineListing: ...

    async def container(self, container_id: str) -> Mapping[str, Any] | Lookup: ...

    async def network(self, network_id: str) -> Mapping[str, Any] | Lookup: ...

    async def close(self) -> None: ...


class EventStream:
    """aiodocker's event stream, read with timeouts that never lose an event: a read still in
    flight when the timeout strikes is kept for the next call."""

    def __init__(self, docker: aiodocker.Docker, subscriber: Any) -> None:
        self._docker = docker
        self._subscriber = subscriber
        self._reading: asyncio.Future[Any] | None = None

    async def next(self, timeout: float | None) -> Mapping[str, Any] | None:
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._subscriber.get())
        done, _ = await asyncio.wait({self._reading}, timeout=timeout)
        if not done:
            return None
        event, self._reading = self._reading.result(), None
        if event is None:
            raise_stream_failure(self._docker)
            raise StreamEnded("event stream ended")
        return event if isinstance(event, Mapping) else {}

    def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            self._reading = None


@dataclass(frozen=True, slots=True)
class EngineListing:
    """The engine's raw JSON: `GET /networks` entries and the inspect of each running container
    (a full sync translates it; `scopedns snapshot` writes it as is)."""

    networks: tuple[Mapping[str, Any], ...]
    containers: tuple[Mapping[str, Any], ...]


class DockerEngine:
    """The Engine protocol over aiodocker, for one connection cycle."""

    def __init__(self, url: str | None) -> None:
        self._docker = open_docker(url)

    async def now(self) -> int | None:
        return await engine_now(self._docker)

    def subscribe(self, since_ns: int | None) -> EventStream:
        params: dict[str, Any] = {"filters": _EVENT_FILTERS}
        if since_ns is not None:
            params["since"] = since_param(since_ns)
        subscriber = self._docker.events.subscribe(**params)  # type: ignore[no-untyped-call]
        return EventStream(self._docker, subscriber)

    async def listing(self, concurrency: int) -> EngineListing:
        return await list_engine(self._docker, concurrency)

    async def container(self, container_id: str) -> Mapping[str, Any] | Lookup:
        return await inspect_one(self._docker.containers.container(container_id).show(),
                                 f"container {container_id}")

    async def network(self, network_id: str) -> Mapping[str, Any] | Lookup:
        return await inspect_one(show_network(self._docker, network_id),
                                 f"network {network_id}")

    async def close(self) -> None:
        await close_quietly(self._docker)


async def list_engine(docker: aiodocker.Docker,
                      concurrency: int = INSPECT_CONCURRENCY) -> EngineListing:
    """List every network and inspect every running container, `concurrency` at a time;
    containers that vanish meanwhile or cannot be read are left out."""
    raw_networks = await docker.networks.list()
    networks = tuple(n for n in raw_networks or () if isinstance(n, Mapping))
    listed = await docker.containers.list()
    ids = [str(c.id) for c in listed or ()]
    return EngineListing(networks, await _inspect_all(docker, ids, max(1, concurrency)))


async def _inspect_all(docker: aiodocker.Docker, ids: Sequence[str],
                       concurrency: int) -> tuple[Mapping[str, Any], ...]:
    found: list[Mapping[str, Any]] = []
    pending = iter(ids)
    done = 0

    async def worker() -> None:
        nonlocal done
        for cid in pending:
            data = await inspect_one(docker.containers.container(cid).show(),
                                     f"container {cid}")
            if not isinstance(data, Lookup):
                found.append(data)
            done += 1
            if done % PROGRESS_EVERY == 0:
                log.info("inspected %d/%d containers", done, len(ids))

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(ids))):
                group.create_task(worker())
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return tuple(found)


async def engine_now(docker: aiodocker.Docker) -> int | None:
    """The engine's clock (events are stamped with it, not ours)."""
    info = await docker.system.info()
    return engine_time_nano(info.get("SystemTime") if isinstance(info, Mapping) else None)


async def inspect_one(call: Awaitable[Any], what: str) -> Mapping[str, Any] | Lookup:
    """One inspect call: its JSON object, GONE on 404, FAILED (logged) on another API error for
    this object. An unreachable engine propagates: the cycle is over."""
    try:
        data = await call
    except DockerError as exc:
        if exc.status == 404:
            return Lookup.GONE
        if exc.status == _UNREACHABLE:
            raise
        log.warning("cannot inspect %s, left as it is: %s", what, describe(exc))
        return Lookup.FAILED
    if not isinstance(data, Mapping):
        log.warning("inspect of %s returned %s, not an object", what, type(data).__name__)
        return Lookup.FAILED
    return data


def show_network(docker: aiodocker.Docker, nid: str) -> Awaitable[Any]:
    """`GET /networks/{nid}` in one request (networks.get() would make two)."""
    network: Any = DockerNetwork  # untyped in aiodocker
    request: Awaitable[Any] = network(docker, nid).show()
    return request


def raise_stream_failure(docker: aiodocker.Docker) -> None:
    """aiodocker ends the stream with None even when it failed: re-raise the reason, if any."""
    task = docker.events.task
    if task is not None and task.done() and not task.cancelled():
        error = task.exception()
        if error is not None:
            raise error


async def close_quietly(docker: aiodocker.Docker) -> None:
    # events.stop() re-raises whatever ended the stream (already handled), and if it raises
    # inside close() the HTTP session stays open: so stop the events first, then close.
    for step in (docker.events.stop, docker.close):
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("closing the client: %s", describe(exc))


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, DockerError) else text
