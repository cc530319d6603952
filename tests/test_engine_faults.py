# The Docker watcher under engine faults, on the real engine: an event stream cut while things
# change (missed events are replayed in order, then a full reconcile), a burst of hundreds of
# starts mixed with containers that are gone before they can be inspected (404) and with stream
# cuts (replayed, duplicated events), a drifted table repaired by the periodic reconcile, and
# scopedns itself restarting (registration order rebuilt the same way every time).
# After each, the table must equal what the engine reports: record for record.
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from resolver.table import NameTable
from tests.conftest import WatcherFactory
from tests.docker_engine import Engine, SocketProxy, eventually, holders, require_engine
from watchers.translate import container_from_inspect

pytestmark = pytest.mark.docker

BURST = 150  # containers started at once
VANISHING = 30  # containers that exit and are removed at once: inspect answers 404
PARALLEL_RUNS = 8
SETTLE = 30.0  # seconds the table may take to catch up after a burst on a busy machine


@pytest.fixture(scope="module", autouse=True)
def engine() -> None:
    require_engine()


async def ours_on_engine(engine_cli: Engine) -> dict[str, object]:
    """The running containers this test made, as the engine reports them now, translated."""
    ids = (await engine_cli.docker("ps", "-q", "--no-trunc", "--filter",
                                   f"name={engine_cli.prefix}-")).split()
    if not ids:
        return {}
    found = json.loads(await engine_cli.docker("inspect", *ids))
    infos = (container_from_inspect(item) for item in found)
    return {info.id: info for info in infos if info is not None}


def ours_in_table(table: NameTable, engine_cli: Engine) -> dict[str, object]:
    return {c.id: c for c in table.containers if c.name.startswith(f"{engine_cli.prefix}-")}


async def assert_table_matches_engine(table: NameTable, engine_cli: Engine) -> None:
    """Eventually (a busy machine may lag) and then exactly: same containers, same records."""
    truth: dict[str, object] = {}

    async def settled() -> bool:
        nonlocal truth
        truth = await ours_on_engine(engine_cli)
        return ours_in_table(table, engine_cli) == truth

    deadline = asyncio.get_running_loop().time() + SETTLE
    while not await settled():
        if asyncio.get_running_loop().time() > deadline:
            table_now = ours_in_table(table, engine_cli)
            missing = truth.keys() - table_now.keys()
            extra = table_now.keys() - truth.keys()
            differ = [c for c in truth.keys() & table_now.keys() if truth[c] != table_now[c]]
            raise AssertionError(f"table != engine after {SETTLE}s: missing {len(missing)}, "
                                 f"extra {len(extra)}, different {len(differ)}")
        await asyncio.sleep(0.5)


async def test_missed_joins_are_replayed_in_the_order_they_happened(
    engine_cli: Engine, start_watcher: WatcherFactory, proxy: SocketProxy
) -> None:
    # `late` started after `early`, but joins the alias first while we are away: a reconcile
    # alone would order by start time; the replayed events keep the order they joined in.
    table = await start_watcher(proxy.url, backoff_initial=0.2,
                                backoff_max=0.4)
    home, svc = f"{engine_cli.prefix}-home", f"{engine_cli.prefix}-svc"
    await engine_cli.network("home")
    await engine_cli.network("svc")
    early, late = f"{engine_cli.prefix}-early", f"{engine_cli.prefix}-late"
    await engine_cli.run("early", "--network", home)
    await engine_cli.run("late", "--network", home)
    await eventually(lambda: holders(table, home, early) and holders(table, home, late),
                     "both containers before the outage")

    await proxy.down()
    await engine_cli.docker("network", "connect", "--alias", "api", svc, late)
    await engine_cli.docker("network", "connect", "--alias", "api", svc, early)
    await proxy.up()

    await eventually(lambda: len(holders(table, svc, "api")) == 2,
                     "both aliases after the reconnect", timeout=10)
    assert [name for name, _ in holders(table, svc, "api")] == [late, early]
    await assert_table_matches_engine(table, engine_cli)


async def _run_many(engine_cli: Engine, network: str, names: list[str], *args: str) -> None:
    gate = asyncio.Semaphore(PARALLEL_RUNS)

    async def one(name: str) -> None:
        async with gate:
            await engine_cli.run(name, "--network", network, *args)

    await asyncio.gather(*(one(name) for name in names))


async def _cut_while(proxy: SocketProxy, busy: asyncio.Future[Any]) -> int:
    """Cut the relay every second while `busy` runs: each reconnect replays what was missed."""
    cuts = 0
    while not busy.done():
        await asyncio.sleep(1.0)
        await proxy.down()
        await asyncio.sleep(0.2)
        await proxy.up()
        cuts += 1
    return cuts


async def test_burst_of_starts_with_404s_and_stream_cuts_ends_equal_to_the_engine(
    engine_cli: Engine, start_watcher: WatcherFactory, proxy: SocketProxy
) -> None:
    table = await start_watcher(proxy.url, backoff_initial=0.1,
                                backoff_max=0.3)
    net = f"{engine_cli.prefix}-burst"
    await engine_cli.network("burst")
    stayers = [f"b{i}" for i in range(BURST)]
    # `--rm` containers running `true`: start, die and destroy before most inspections.
    vanishing = [f"v{i}" for i in range(VANISHING)]
    burst = asyncio.gather(_run_many(engine_cli, net, stayers),
                           _run_many(engine_cli, net, vanishing, "--rm", "--entrypoint",
                                     "true"))
    cuts = await _cut_while(proxy, burst)
    await burst
    assert cuts >= 1
    for name in stayers[::10]:  # some stop after the burst
        await engine_cli.docker("stop", "-t", "0", f"{engine_cli.prefix}-{name}")
    await assert_table_matches_engine(table, engine_cli)
    assert len(ours_in_table(table, engine_cli)) == BURST - len(stayers[::10])


async def test_periodic_reconcile_repairs_a_table_that_drifted(
    engine_cli: Engine, start_watcher: WatcherFactory
) -> None:
    table = await start_watcher(resync_interval=1.0)
    net = f"{engine_cli.prefix}-drift"
    await engine_cli.network("drift")
    cid = await engine_cli.run("kept", "--network", net)
    await eventually(lambda: table.container(cid) is not None, "the container")
    table.remove_container(cid)  # as if its start event had been lost
    await eventually(lambda: table.container(cid) is not None,
                     "the periodic reconcile brings it back", timeout=5)


async def test_a_restarted_scopedns_rebuilds_the_same_order_every_time(
    engine_cli: Engine, start_watcher: WatcherFactory
) -> None:
    live = await start_watcher()
    net = f"{engine_cli.prefix}-order"
    await engine_cli.network("order")
    names = [f"{engine_cli.prefix}-h{i}" for i in range(3)]
    for index in range(3):
        await engine_cli.run(f"h{index}", "--network", net, "--network-alias", "svc")
    await engine_cli.docker("restart", "-t", "0", names[0])  # h0 rejoins behind h1, h2
    expected = [names[1], names[2], names[0]]
    await eventually(lambda: [n for n, _ in holders(live, net, "svc")] == expected,
                     "live order after the restart")
    for _ in range(2):  # scopedns restarts: a fresh table from a full listing
        fresh = await start_watcher()
        assert [n for n, _ in holders(fresh, net, "svc")] == expected
