# The snapshot state source (watchers/snapshot.py): a snapshot answers exactly as the live
# watcher's table for the same engine state, bad files give one-line errors naming the file,
# bad entries are skipped, and the CLI serves a snapshot (re-read on SIGHUP) and writes one.
# The live side is the real DockerWatcher, against a fake engine (recorded inspect JSON from
# tests/data served over a unix socket) or, in the docker-marked test, the real engine.
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import dns.reversename
import pytest

from resolver.answer import AliasOrder, Policy
from resolver.handler import Handler
from resolver.table import NameTable
from testkit.ports import free_port
from tests.conftest import WatcherFactory
from tests.docker_engine import URL, Engine, require_engine
from tests.fake_engine import FakeEngine
from watchers.snapshot import (
    SnapshotError,
    load_snapshot,
    parse_snapshot,
    snapshot_document,
    take_snapshot,
    write_snapshot,
)

DATA = Path(__file__).parent / "data"
NETWORKS: list[dict[str, Any]] = json.loads((DATA / "docker_networks.json").read_text())
CONTAINERS: list[dict[str, Any]] = json.loads((DATA / "docker_containers.json").read_text())
WAIT = 20.0  # seconds a subprocess may take to start, sync or reload


# ----- comparing two tables ------------------------------------------------------------------


def names_in(tables: Iterable[NameTable], only: str = "") -> set[str]:
    """Every name a client could ask about in these tables (of the containers whose name
    contains `only`), plus PTRs and misses."""
    names = {"nosuch.invalid", "nosuch"}
    for table in tables:
        networks = {n.id: n.name for n in table.networks}
        for c in (c for c in table.containers if only in c.name):
            for ep in c.endpoints:
                dns_names = c.dns_names(ep)
                names.update(dns_names)
                names.update(f"{n}.{networks.get(ep.network_id, 'x')}" for n in dns_names)
                names.update(link.alias for link in ep.links)
                names.update(dns.reversename.from_address(str(a)).to_text(omit_final_dot=True)
                             for a in ep.addresses)
    return names


def sources_in(tables: Iterable[NameTable], only: str = "") -> set[str]:
    """Every endpoint address and one unknown address per subnet (of the containers and
    networks whose name contains `only`), loopback and a stranger."""
    sources = {"127.0.0.1", "192.0.2.1"}
    for table in tables:
        sources.update(str(a) for c in table.containers if only in c.name
                       for ep in c.endpoints for a in ep.addresses)
        sources.update(str(s.network_address + 200) for n in table.networks if only in n.name
                       for s in n.subnets)
    return sources


def all_answers(table: NameTable, sources: set[str], names: set[str]) -> dict[str, object]:
    handler = Handler(table, Policy(alias_order=AliasOrder.ORDERED, forwarding=False))
    answers: dict[str, object] = {}
    for source in sorted(sources):
        for name in sorted(names):
            for rdtype in ("A", "AAAA", "PTR", "TXT"):
                query = dns.message.make_query(name, rdtype)
                query.id = 4242
                outcome = handler.handle(query.to_wire(), source, False)
                answers[f"{source} {name} {rdtype}"] = (
                    outcome if isinstance(outcome, bytes | None) else "forward")
    return answers


def assert_same_answers(live: NameTable, snapshot: NameTable, only: str = "") -> None:
    """Same bytes for every (source, name, type) of the two tables (see names_in, sources_in)."""
    sources, names = sources_in([live, snapshot], only), names_in([live, snapshot], only)
    expected, got = all_answers(live, sources, names), all_answers(snapshot, sources, names)
    differ = [key for key in expected if expected[key] != got[key]]
    assert not differ, f"{len(differ)} answers differ, e.g. {differ[:5]}"
    hits = [k for k, v in expected.items() if isinstance(v, bytes)
            and dns.message.from_wire(v).answer]
    assert hits, "no name resolved at all: nothing was compared"


def host_view_answer(table: NameTable, name: str) -> tuple[str, list[str]]:
    """What `table` answers `name` (A) from loopback: rcode and sorted addresses."""
    reply = Handler(table, Policy(forwarding=False)).handle(
        dns.message.make_query(name, "A").to_wire(), "127.0.0.1", False)
    assert isinstance(reply, bytes)
    message = dns.message.from_wire(reply)
    return (dns.rcode.to_text(message.rcode()),
            sorted(rr.to_text() for rrset in message.answer for rr in rrset))


def table_of(path: Path) -> NameTable:
    table = NameTable()
    table.replace_all(load_snapshot(path))
    return table


# ----- a fake engine and the real one -------------------------------------------------------


@pytest.fixture
async def engine() -> AsyncIterator[FakeEngine]:
    fake = await FakeEngine(NETWORKS, CONTAINERS).start()
    yield fake
    await fake.close()


@pytest.fixture
async def engine_ssnap(engine_cli: Engine) -> Engine:
    """The shared docker CLI helper, with this module's prefix on what it makes."""
    engine_cli.prefix = f"ssnap-{secrets.token_hex(3)}"
    return engine_cli


# ----- loading -------------------------------------------------------------------------------


async def test_snapshot_of_an_engine_answers_like_the_live_watcher(
        engine: FakeEngine, start_watcher: WatcherFactory, tmp_path: Path) -> None:
    live = await start_watcher(engine.url)
    write_snapshot(await take_snapshot(engine.url), str(tmp_path / "s.json"))
    assert_same_answers(live, table_of(tmp_path / "s.json"))


def test_a_file_and_a_document_give_the_same_state_and_the_document_is_left_alone(
        tmp_path: Path) -> None:
    """load_snapshot drops each entry's JSON once translated (docs/performance.md), which
    must not change the state; parse_snapshot leaves its caller's document as it was."""
    document = snapshot_document(NETWORKS, CONTAINERS)
    write_snapshot(document, str(tmp_path / "s.json"))
    before = json.dumps(document)
    assert parse_snapshot(document, "test") == load_snapshot(tmp_path / "s.json")
    assert json.dumps(document) == before


def test_recorded_containers_resolve_from_a_snapshot(tmp_path: Path) -> None:
    write_snapshot(snapshot_document(NETWORKS, CONTAINERS), str(tmp_path / "s.json"))
    table = table_of(tmp_path / "s.json")
    user_defined = {n["Name"] for n in NETWORKS if n["Name"] not in ("bridge", "host", "none")}
    resolved = 0
    for c in CONTAINERS:
        name = c["Name"].lstrip("/")
        recorded = {ep["IPAddress"] for net, ep in c["NetworkSettings"]["Networks"].items()
                    if net in user_defined and c["State"]["Running"] and ep["IPAddress"]}
        rcode, addresses = host_view_answer(table, name)
        if recorded:
            resolved += 1
            assert rcode == "NOERROR" and len(addresses) == 1 and addresses[0] in recorded, name
        else:
            assert rcode == "NXDOMAIN", name
    assert 0 < resolved < len(CONTAINERS)


def test_bad_entries_are_skipped_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken_network = {k: v for k, v in NETWORKS[0].items() if k != "Id"}
    containers = ["not an object", CONTAINERS[0], CONTAINERS[0], *CONTAINERS[1:]]
    path = tmp_path / "s.json"
    document = snapshot_document([broken_network, *NETWORKS[1:]], [])
    write_snapshot({**document, "containers": containers}, str(path))
    with caplog.at_level(logging.WARNING, logger="watchers.snapshot"):
        state = load_snapshot(path)
    assert NETWORKS[0]["Id"] not in {n.id for n in state.networks}
    assert len(state.networks) == len(NETWORKS) - 1
    assert len({c.id for c in state.containers}) == len(state.containers) > 0
    warned = caplog.text
    assert "networks[0] skipped" in warned and "containers[0] skipped" in warned
    assert "containers[2] skipped: a repeated Id" in warned


VALID = {"scopedns_snapshot": 1, "taken_at": "2026-11-28T14:00:00Z", "networks": [],
         "containers": []}


@pytest.mark.parametrize(("content", "complaint"), [
    pytest.param("{not json", "not JSON", id="not-json"),
    pytest.param(b"\xff\xfe\x00", "not JSON", id="binary"),
    pytest.param([], "not a scopedns snapshot", id="a-list"),
    pytest.param({"networks": []}, "not a scopedns snapshot", id="no-format-key"),
    pytest.param({**VALID, "scopedns_snapshot": 2}, "format version 2", id="version-2"),
    pytest.param({**VALID, "scopedns_snapshot": True}, "format version True", id="version-true"),
    pytest.param({**VALID, "taken_at": "yesterday"}, '"taken_at" must be', id="bad-time"),
    pytest.param({k: v for k, v in VALID.items() if k != "taken_at"}, '"taken_at" must be',
                 id="no-time"),
    pytest.param({**VALID, "networks": {}}, '"networks" must be a list', id="networks-dict"),
    pytest.param({k: v for k, v in VALID.items() if k != "containers"},
                 '"containers" must be a list', id="no-containers"),
])
def test_bad_files_give_one_line_errors(content: object, complaint: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(SnapshotError) as raised:
        load_snapshot(path)
    message = str(raised.value)
    assert len(message.splitlines()) == 1, message
    assert str(path) in message and complaint in message, message


def test_missing_file_gives_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match=f"{tmp_path}/absent.json: cannot read"):
        load_snapshot(tmp_path / "absent.json")


# ----- the command line ----------------------------------------------------------------------


async def scopedns(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "resolver", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def wait_for_line(proc: asyncio.subprocess.Process, pattern: str) -> re.Match[str]:
    """The first stderr line matching `pattern` (within WAIT seconds)."""
    async def scan() -> re.Match[str]:
        assert proc.stderr is not None
        while line := (await proc.stderr.readline()).decode():
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"scopedns exited before logging {pattern!r}")
    return await asyncio.wait_for(scan(), WAIT)


async def udp_addresses(port: int, name: str) -> tuple[str, list[str]]:
    reply = await dns.asyncquery.udp(dns.message.make_query(name, "A"), "127.0.0.1",
                                     port=port, timeout=3)
    return (dns.rcode.to_text(reply.rcode()),
            sorted(rr.to_text() for rrset in reply.answer for rr in rrset))


@contextlib.asynccontextmanager
async def serving(snapshot: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    port = free_port()
    proc = await scopedns("serve", "--snapshot", str(snapshot), "--listen", f"127.0.0.1:{port}",
                          "--no-upstream", "--docker", "unix:///nonexistent.sock")
    try:
        await wait_for_line(proc, "snapshot: synced")
        yield proc, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), WAIT)


async def test_serve_snapshot_answers_on_loopback_and_rereads_on_sighup(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write_snapshot(snapshot_document(NETWORKS, CONTAINERS), str(path))
    async with serving(path) as (proc, port):
        assert await udp_addresses(port, "rec4963-web") == ("NOERROR", ["10.231.0.3"])
        assert await udp_addresses(port, "www.rec4963-plain") == ("NOERROR", ["10.231.0.3"])
        assert (await udp_addresses(port, "nosuch.invalid"))[0] == "NXDOMAIN"
        without_web = [c for c in CONTAINERS if c["Name"] != "/rec4963-web"]
        write_snapshot(snapshot_document(NETWORKS, without_web), str(path))
        proc.send_signal(signal.SIGHUP)
        await wait_for_line(proc, "snapshot: synced")
        assert (await udp_addresses(port, "rec4963-web"))[0] == "NXDOMAIN"
        assert await udp_addresses(port, "rec4963-target") == ("NOERROR", ["10.231.0.2"])
        path.write_text("{broken")
        proc.send_signal(signal.SIGHUP)
        await wait_for_line(proc, "not JSON.*keeping the previous table")
        assert await udp_addresses(port, "rec4963-target") == ("NOERROR", ["10.231.0.2"])


async def test_serve_with_a_bad_snapshot_exits_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[]")
    proc = await scopedns("serve", "--snapshot", str(tmp_path / "bad.json"), "--no-upstream")
    _, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 2
    assert err.decode().count("\n") == 1 and "not a scopedns snapshot" in err.decode()


async def test_snapshot_command_writes_what_serve_answers(
        engine: FakeEngine, tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    proc = await scopedns("snapshot", "--docker", engine.url, "--output", str(path))
    _, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, err.decode()
    running = [c for c in CONTAINERS if c["State"]["Running"]]
    assert len(json.loads(path.read_text())["containers"]) == len(running)
    async with serving(path) as (_, port):
        assert await udp_addresses(port, "Web-Alias") == ("NOERROR", ["10.231.0.3"])


async def test_snapshot_command_without_an_engine_exits_with_one_line() -> None:
    proc = await scopedns("snapshot", "--docker", "unix:///nonexistent-ssnap.sock")
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 1 and out == b""
    assert err.decode().count("\n") == 1 and "unix:///nonexistent-ssnap.sock" in err.decode()


# ----- the real engine -----------------------------------------------------------------------


async def small_topology(engine: Engine) -> set[str]:
    """Two networks, four containers (aliases, a hostname, a link, one on both networks)."""
    front, back = f"{engine.prefix}-front", f"{engine.prefix}-back"
    await engine.network("front")
    await engine.network("back")
    await engine.run("db", "--network", back, "--network-alias", "database")
    await engine.run("api", "--network", back, "--hostname", "apihost")
    await engine.run("web", "--network", front, "--network-alias", "www")
    await engine.run("edge", "--network", front, "--link", f"{engine.prefix}-web:site")
    await engine.docker("network", "connect", "--alias", "gateway", front, f"{engine.prefix}-api")
    return set(engine.containers)


@pytest.mark.docker
async def test_snapshot_of_the_real_engine_answers_like_the_live_watcher(
        engine_ssnap: Engine, start_watcher: WatcherFactory, tmp_path: Path) -> None:
    require_engine()
    await small_topology(engine_ssnap)
    live = await start_watcher()  # its first sync already sees the whole topology
    path = tmp_path / "engine.json"
    proc = await scopedns("snapshot", "--docker", URL, "--output", str(path))
    _, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, err.decode()
    # Only this test's objects: other containers on the engine may come and go meanwhile.
    prefix = engine_ssnap.prefix
    assert_same_answers(live, table_of(path), only=prefix)
    async with serving(path) as (_, port):
        for name in sorted(names_in([live], only=prefix)):
            assert await udp_addresses(port, name) == host_view_answer(live, name), name
