# Fixtures shared by the tests on the real Docker engine (helpers in tests/docker_engine.py),
# and the order of the run: tests that restart the engine itself go last, so that they cannot
# pull the engine from under another module's containers.
from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from resolver.table import NameTable
from tests.docker_engine import URL, Engine, SocketProxy, eventually
from watchers.docker import DockerWatcher


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("engine_restart") is not None)


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
