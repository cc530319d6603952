# Fixtures shared by the tests: the in-process server on loopback and fake upstreams
# (tests/servers.py, tests/fakes.py), those on the real Docker engine (helpers in
# tests/docker_engine.py), and the order of the run: tests that restart the engine itself
# (marked engine_restart: test_engine_restart.py, integration/test_takeover_restart.py) go
# last, so that they cannot pull the engine from under another module's containers.
from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

import pytest
import uvloop

from resolver.config import Config
from resolver.server import Server
from resolver.table import NameTable
from tests.docker_engine import URL, Engine, SocketProxy, eventually
from tests.fakes import FakeUpstream
from tests.servers import Serve, serving
from watchers.docker import DockerWatcher

# --udp-io: the tests that start a server (the `serve` fixture) run on each way of reading UDP:
# the receive thread (batch) on both loops, the event loop's path (loop, the default) on uvloop
# alone (production's loop: resolver/cli.py).
UDP_IO_MODES = ("batch", "loop")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("engine_restart") is not None)
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        on_asyncio = params.get("_asyncio_loop_factory") is asyncio.new_event_loop
        (dropped if on_asyncio and params.get("serve") == "loop" else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item
                                  ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """pytest-asyncio's hook: each test that starts a server (the `serve` fixture) runs twice,
    on asyncio's loop and on uvloop, which production runs on and whose transports differ;
    every other async test on asyncio's loop alone."""
    if "serve" in getattr(item, "fixturenames", ()):
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture(params=UDP_IO_MODES)
async def serve(request: pytest.FixtureRequest) -> AsyncIterator[Serve]:
    """Start servers on loopback (tests/servers.py), reading UDP as the parameter says; all
    are closed after the test."""
    async with AsyncExitStack() as running:
        async def start(table: NameTable, config: Config | None = None) -> Server:
            config = replace(config or Config(), udp_io=request.param)
            return await running.enter_async_context(serving(table, config))

        yield start


Fakes = Callable[..., Awaitable[FakeUpstream]]


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    """Start fake upstreams on loopback (tests/fakes.py); all are closed after the test.
    Mode "closed": a port where nothing listens any more."""
    started: list[FakeUpstream] = []

    async def make(mode: str = "answer", then_answer: bool = False) -> FakeUpstream:
        fake = await FakeUpstream(mode=mode, then_answer=then_answer).start()
        started.append(fake)
        if mode == "closed":
            fake.close()
        return fake

    yield make
    for fake in started:
        fake.close()


@pytest.fixture
async def engine_cli() -> AsyncIterator[Engine]:
    made = Engine()
    try:
        yield made
    finally:
        await made.cleanup()


WatcherFactory = Callable[..., Awaitable[NameTable]]


@pytest.fixture
async def start_watcher() -> AsyncIterator[WatcherFactory]:
    running: list[tuple[DockerWatcher, asyncio.Task[None]]] = []

    async def start(url: str = URL, backoff_initial: float = 0.5, backoff_max: float = 30.0,
                    resync_interval: float = 0.0) -> NameTable:
        table = NameTable()
        watcher = DockerWatcher(table, url, backoff_initial=backoff_initial,
                                backoff_max=backoff_max, resync_interval=resync_interval)
        running.append((watcher, asyncio.create_task(watcher.run())))
        await eventually(lambda: table.synced, "the first sync")
        return table

    yield start
    for watcher, task in running:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled(), "run() must end only by cancellation"
        await watcher.close()


@pytest.fixture
async def proxy() -> AsyncIterator[SocketProxy]:
    """A cuttable relay to the engine, up; taken down and removed afterwards."""
    # A short path: unix socket paths are limited to ~107 bytes.
    directory = Path(f"/tmp/sdt-{secrets.token_hex(4)}")
    directory.mkdir()
    relay = SocketProxy(directory / "docker.sock")
    await relay.up()
    try:
        yield relay
    finally:
        await relay.down()
        for child in directory.iterdir():
            child.unlink()
        directory.rmdir()
