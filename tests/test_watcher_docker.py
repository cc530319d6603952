# DockerWatcher against the real engine: networks and containers are made with the docker CLI
# (image scopedns-busybox:test, `sleep 600`, --dns 127.0.0.1 so nothing resolves outward) and the
# NameTable must follow within a few seconds. Every name carries a random suffix and everything
# created is removed, even when a test fails. Skipped when no engine answers, unless CI=true.
from __future__ import annotations

import asyncio

import pytest

from resolver.table import NameTable
from tests.conftest import WatcherFactory
from tests.docker_engine import (
    Engine,
    SocketProxy,
    eventually,
    holders,
    network_named,
    require_engine,
)
from watchers.docker import DockerWatcher

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", autouse=True)
def engine() -> None:
    require_engine()


# ----- tests ---------------------------------------------------------------------------------

async def test_first_sync_sees_what_already_runs(
    engine_cli: Engine, start_watcher: WatcherFactory
) -> None:
    net = f"{engine_cli.prefix}-net"
    name = f"{engine_cli.prefix}-early"
    await engine_cli.network("net")
    cid = await engine_cli.run("early", "--network", net, "--network-alias", "early-alias",
                               "--hostname", "earlyhost")
    await engine_cli.run("gone", "--network", net)
    await engine_cli.docker("stop", "-t", "0", f"{engine_cli.prefix}-gone")
    address = await engine_cli.ip(name, net)

    table = await start_watcher()
    assert table.container(cid) is not None
    for alias in (name, "early-alias", cid[:12], "earlyhost"):
        assert holders(table, net, alias) == [(name, address)], alias
    assert holders(table, net, f"{engine_cli.prefix}-gone") == []


async def test_start_adds_and_stop_removes(
    engine_cli: Engine, start_watcher: WatcherFactory
) -> None:
    table = await start_watcher()
    net = f"{engine_cli.prefix}-net"
    name = f"{engine_cli.prefix}-app"
    await engine_cli.network("net")
    cid = await engine_cli.run("app", "--network", net, "--network-alias", "svc")
    address = await engine_cli.ip(name, net)
    await eventually(lambda: holders(table, net, "svc") == [(name, address)], "alias on start")
    assert holders(table, net, name) == [(name, address)]

    await engine_cli.docker("stop", "-t", "0", name)
    await eventually(lambda: table.container(cid) is None, "container gone after stop")
    assert holders(table, net, "svc") == []


async def test_die_removes(engine_cli: Engine, start_watcher: WatcherFactory) -> None:
    table = await start_watcher()
    net = f"{engine_cli.prefix}-net"
    name = f"{engine_cli.prefix}-victim"
    await engine_cli.network("net")
    cid = await engine_cli.run("victim", "--network", net)
    await eventually(lambda: holders(table, net, name), "name after start")
    await engine_cli.docker("kill", name)
    await eventually(lambda: table.container(cid) is None, "container gone after kill (die)")
    assert holders(table, net, name) == []


async def test_rename(engine_cli: Engine, start_watcher: WatcherFactory) -> None:
    table = await start_watcher()
    net = f"{engine_cli.prefix}-net"
    old, new = f"{engine_cli.prefix}-old", f"{engine_cli.prefix}-new"
    await engine_cli.network("net")
    await engine_cli.run("old", "--network", net)
    engine_cli.containers.append(new)
    await eventually(lambda: holders(table, net, old), "old name")
    await engine_cli.docker("rename", old, new)
    await eventually(lambda: holders(table, net, new) and not holders(table, net, old),
                     "new name replaces the old one")


async def test_connect_alias_and_disconnect(
    engine_cli: Engine, start_watcher: WatcherFactory
) -> None:
    table = await start_watcher()
    first, second = f"{engine_cli.prefix}-one", f"{engine_cli.prefix}-two"
    name = f"{engine_cli.prefix}-roamer"
    await engine_cli.network("one")
    await engine_cli.network("two")
    await engine_cli.run("roamer", "--network", first)
    await eventually(lambda: holders(table, first, name), "name on the first network")

    await engine_cli.docker("network", "connect", "--alias", "extra", second, name)
    address = await engine_cli.ip(name, second)
    await eventually(lambda: holders(table, second, "extra") == [(name, address)],
                     "alias added by network connect")
    assert holders(table, first, "extra") == []

    await engine_cli.docker("network", "disconnect", second, name)
    await eventually(lambda: not holders(table, second, name), "names gone after disconnect")
    assert holders(table, second, "extra") == []
    assert holders(table, first, name), "still on the first network"


async def test_restart_rejoins_at_the_end(
    engine_cli: Engine, start_watcher: WatcherFactory
) -> None:
    """docs/order.md: a holder that leaves (here: die during `docker restart`) and comes back joins
    the end of the name's registration order, even if it is back before we inspect it."""
    table = await start_watcher()
    net = f"{engine_cli.prefix}-net"
    first, second = f"{engine_cli.prefix}-first", f"{engine_cli.prefix}-second"
    await engine_cli.network("net")
    await engine_cli.run("first", "--network", net, "--network-alias", "shared")
    await eventually(lambda: holders(table, net, "shared"), "the first holder")
    await engine_cli.run("second", "--network", net, "--network-alias", "shared")
    await eventually(lambda: [n for n, _ in holders(table, net, "shared")] == [first, second],
                     "both holders, in start order")
    await engine_cli.docker("restart", "-t", "0", first)
    await eventually(lambda: [n for n, _ in holders(table, net, "shared")] == [second, first],
                     "the restarted holder moved to the end")


async def test_network_create_and_rm(engine_cli: Engine, start_watcher: WatcherFactory) -> None:
    table = await start_watcher()
    net = f"{engine_cli.prefix}-lonely"
    nid = await engine_cli.network("lonely", "--internal")
    await eventually(lambda: network_named(table, net), "network after create")
    info = network_named(table, net)
    assert info is not None and info.id == nid and info.internal and info.user_defined
    await engine_cli.docker("network", "rm", net)
    await eventually(lambda: network_named(table, net) is None, "network gone after rm")
    assert table.records(nid) is None


async def test_destroy_removes(engine_cli: Engine, start_watcher: WatcherFactory) -> None:
    table = await start_watcher()
    net = f"{engine_cli.prefix}-net"
    name = f"{engine_cli.prefix}-doomed"
    await engine_cli.network("net")
    cid = await engine_cli.run("doomed", "--network", net)
    await eventually(lambda: table.container(cid) is not None, "container after start")
    await engine_cli.docker("rm", "-f", name)
    await eventually(lambda: table.container(cid) is None, "container gone after rm -f")
    assert holders(table, net, name) == []


async def test_default_bridge_container_is_known_without_names(
    engine_cli: Engine, start_watcher: WatcherFactory
) -> None:
    table = await start_watcher()
    cid = await engine_cli.run("legacy")
    await eventually(lambda: table.container(cid) is not None, "container after start")
    info = table.container(cid)
    assert info is not None and len(info.endpoints) == 1
    bridge = network_named(table, "bridge")
    assert bridge is not None and not bridge.user_defined
    assert info.endpoints[0].network_id == bridge.id and info.endpoints[0].ipv4 is not None


# ----- losing the engine ---------------------------------------------------------------------

async def test_engine_loss_keeps_table_then_resyncs(
    engine_cli: Engine, start_watcher: WatcherFactory, proxy: SocketProxy
) -> None:
    table = await start_watcher(proxy.url, backoff_initial=0.1,
                                backoff_max=0.4)
    net = f"{engine_cli.prefix}-net"
    stays, goes = f"{engine_cli.prefix}-stays", f"{engine_cli.prefix}-goes"
    await engine_cli.network("net")
    await engine_cli.run("stays", "--network", net)
    await engine_cli.run("goes", "--network", net)
    await eventually(lambda: holders(table, net, stays) and holders(table, net, goes),
                     "both names before the outage")

    await proxy.down()
    await engine_cli.docker("rm", "-f", goes)
    await engine_cli.run("late", "--network", net)
    await asyncio.sleep(0.5)
    assert holders(table, net, goes), "the last known table is kept while the engine is away"

    await proxy.up()
    await eventually(lambda: not holders(table, net, goes)
                     and holders(table, net, f"{engine_cli.prefix}-late"),
                     "resync drops what vanished and adds what appeared")
    assert holders(table, net, stays)


async def test_unreachable_engine_never_syncs_and_never_raises() -> None:
    table = NameTable()
    watcher = DockerWatcher(table, "unix:///nonexistent/docker.sock", backoff_initial=0.05,
                            backoff_max=0.1)
    task = asyncio.create_task(watcher.run())
    await asyncio.sleep(0.6)
    assert not task.done() and not table.synced
    await watcher.close()
    await asyncio.wait_for(task, 2)  # close() ends run() without an exception


async def test_health_status_events_update_readiness_and_ports(
    engine_cli: Engine, start_watcher: WatcherFactory
) -> None:
    """docs/health.md, docs/srv.md: `health_status` events make the watcher re-inspect, and
    readiness and offered ports come from the inspect."""
    table = await start_watcher()
    net = f"{engine_cli.prefix}-net"
    await engine_cli.network("net")
    cid = await engine_cli.run("checked", "--network", net, "--network-alias", "hsvc",
                               "--expose", "8080", "--label", "scopedns.srv.web=80/udp",
                               "--health-cmd", "test -f /ready", "--health-interval", "1s",
                               "--health-retries", "1", "--health-start-period", "60s")
    await eventually(lambda: table.container(cid) is not None, "container after start")
    info = table.container(cid)
    assert info is not None and not info.ready  # starting
    assert {(s.service, s.proto, s.port) for s in info.services} == {
        ("8080", "tcp", 8080), ("web", "udp", 80)}
    await engine_cli.docker("exec", f"{engine_cli.prefix}-checked", "touch", "/ready")
    await eventually(lambda: getattr(table.container(cid), "ready", False), "healthy", 20)
    await engine_cli.docker("exec", f"{engine_cli.prefix}-checked", "rm", "/ready")
    await eventually(lambda: not getattr(table.container(cid), "ready", True), "unhealthy", 20)
