# Operations on the real engine: the event-to-table histogram counts real engine events (a
# container started and stopped), and `scopedns serve --http` says /readyz 503 while the engine
# cannot be reached before the first sync, 200 once synced, and 200 with how stale the table
# is while the engine is away (a cuttable relay stands in for the engine: dockerd is never
# stopped here).
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from resolver.metrics import Metrics, engine_families
from resolver.stats import EngineStats
from resolver.table import NameTable
from testkit.ports import free_port
from tests.docker_engine import URL, Engine, SocketProxy, eventually, require_engine
from watchers.docker import DockerWatcher

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def engine() -> None:
    require_engine()


async def test_event_to_table_histogram_counts_real_events(engine_cli: Engine) -> None:
    stats = EngineStats()
    table = NameTable()
    watcher = DockerWatcher(table, URL, resync_interval=0, stats=stats)
    task = asyncio.create_task(watcher.run())
    try:
        await eventually(lambda: table.synced and stats.connected, "the first sync")
        assert stats.syncs == 1 and stats.last_sync is not None
        timed = stats.event_latency.count
        refreshed = stats.events.get("refresh-container", 0)
        await engine_cli.network("ev")
        await engine_cli.run("ev1", "--network", f"{engine_cli.prefix}-ev")
        name = f"{engine_cli.prefix}-ev1"
        await eventually(lambda: any(c.name == name for c in table.containers), "the start")
        await eventually(lambda: stats.event_latency.count > timed, "a timed event")
        assert stats.events.get("refresh-container", 0) > refreshed
        await engine_cli.docker("stop", "-t", "0", name)
        await eventually(lambda: all(c.name != name for c in table.containers), "the stop")
        assert stats.events.get("remove-container", 0) >= 1
        metrics = Metrics()
        metrics.add(lambda: engine_families(stats, stats.clock))
        text = generate_latest(metrics.registry()).decode()
        samples = {s.name: s.value for f in text_string_to_metric_families(text)
                   for s in f.samples if not s.labels or s.labels.get("le") == "+Inf"}
        assert samples["scopedns_engine_event_to_table_seconds_count"] == stats.event_latency.count
        assert samples["scopedns_engine_event_to_table_seconds_bucket"] == stats.event_latency.count
        assert samples["scopedns_engine_connected"] == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await watcher.close()


async def readyz(port: int) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{port}/readyz", timeout=aiohttp.ClientTimeout(total=5)) as reply:
        return reply.status, await reply.text()


async def readyz_until(port: int, want: str, timeout: float = 20.0) -> tuple[int, str]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            status, body = await readyz(port)
            if want in body:
                return status, body
        except aiohttp.ClientError:
            status, body = 0, "(no answer)"
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"/readyz never said {want!r}; last: {status} {body}")
        await asyncio.sleep(0.2)


async def test_readyz_before_after_and_while_the_engine_is_away(proxy: SocketProxy,
                                                                tmp_path: Path) -> None:
    await proxy.down()  # the engine cannot be reached at start
    http_port = free_port()
    argv = [sys.executable, "-m", "resolver", "serve", "--listen", f"127.0.0.1:{free_port()}",
            "--http", f"127.0.0.1:{http_port}", "--no-upstream", "--docker", proxy.url]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (tmp_path / "scopedns.log").open("w") as log:
        server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    try:
        status, body = await readyz_until(http_port, "not ready")
        assert status == 503 and proxy.url in body and "first full sync" in body
        await proxy.up()
        status, body = await readyz_until(http_port, "ready: following")
        assert status == 200
        await proxy.down()
        status, body = await readyz_until(http_port, "stale")
        assert status == 200 and "unreachable for" in body
    finally:
        server.terminate()
        server.wait(10)
