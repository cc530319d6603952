# The Docker engine itself stops and starts while scopedns (a real `scopedns serve` process on
# loopback, host view) answers a steady query stream. Contract (docs/failures.md, README "Engine
# restarts"): scopedns keeps answering from its last table while the engine is away (answers may
# be stale for the outage, never wrong: every address is one the name really had), never answers
# SERVFAIL once synced, and after the engine is back it reconnects, replays, reconciles and
# answers exactly what the engine reports. Marked engine_restart: the run puts it last.
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from testkit.ports import until_answering
from tests.docker_engine import Engine, require_engine

pytestmark = [pytest.mark.docker, pytest.mark.engine_restart]

ROOT = Path(__file__).resolve().parent.parent
PORT = 5391
PIDFILE = Path("/var/run/docker.pid")
RECOVERY = 60.0  # engine back -> scopedns exact: reconnect backoff (<= 8 s here) + resync
STARTUP = 60.0  # scopedns serving: seconds on a loaded machine (imports, then the bind)
Answer = tuple[str, ...]  # ("NXDOMAIN",) or the sorted addresses
Truth = dict[str, Answer]


@dataclass(frozen=True)
class Observation:
    at: float
    name: str
    answer: Answer


@pytest.fixture(scope="module", autouse=True)
def engine() -> None:
    require_engine()
    if os.geteuid() != 0 or not PIDFILE.exists():
        pytest.skip("restarting dockerd needs root and the engine's pid file")


@pytest.fixture
async def scopedns() -> AsyncIterator[None]:
    command = [str(ROOT / ".venv/bin/scopedns"), "serve", "--listen", f"127.0.0.1:{PORT}",
               "--no-upstream", "--resync-interval", "0", "--log-level", "info"]
    process = await asyncio.create_subprocess_exec(*command, stderr=sys.stderr)
    try:
        # A query sent before the port is bound is lost without an error (a 1 s timeout in
        # ask()); on a loaded machine the test's containers are up before scopedns is.
        await until_answering(PORT, STARTUP, alive=lambda: process.returncode is None)
        yield
    finally:
        assert process.returncode is None, "scopedns exited while the engine restarted"
        process.terminate()
        await process.wait()


async def ask(name: str) -> Answer:
    query = dns.message.make_query(name, "A")
    reply = await dns.asyncquery.udp(query, "127.0.0.1", port=PORT, timeout=1.0)
    if reply.rcode() != dns.rcode.NOERROR:
        return (dns.rcode.to_text(reply.rcode()),)
    return tuple(sorted(item.address for rrset in reply.answer for item in rrset))


async def truth(engine_cli: Engine, names: list[str], alias: str) -> Truth:
    """What each name should answer now, from `docker inspect`."""
    ids = (await engine_cli.docker("ps", "-q", "--filter", f"name={engine_cli.prefix}-")).split()
    running = json.loads(await engine_cli.docker("inspect", *ids)) if ids else []
    address = {c["Name"].lstrip("/"): next(iter(c["NetworkSettings"]["Networks"].values()))
               ["IPAddress"] for c in running}
    started = sorted(running, key=lambda c: c["State"]["StartedAt"])
    result: Truth = {n: (address[n],) if n in address else ("NXDOMAIN",) for n in names}
    holders = [c["Name"].lstrip("/") for c in started
               if alias in next(iter(c["NetworkSettings"]["Networks"].values()))["Aliases"]]
    result[alias] = (address[holders[0]],) if holders else ("NXDOMAIN",)
    return result


async def until_answers(expected: Truth, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while True:
        got = {name: await ask(name) for name in expected}
        if got == expected:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"scopedns answers {got}, engine says {expected}")
        await asyncio.sleep(0.2)


async def keep_asking(names: list[str], seen: list[Observation], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for name in names:
            seen.append(Observation(time.monotonic(), name, await ask(name)))
        await asyncio.sleep(0.01)


async def restart_engine() -> tuple[float, float, float]:
    """SIGTERM dockerd, wait for it to go, start it again: (stopping at, down at, back at)."""
    pid = int(PIDFILE.read_text().strip())
    stopping = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while Path(f"/proc/{pid}").exists():
        await asyncio.sleep(0.1)
    down = time.monotonic()
    await asyncio.sleep(2.0)  # an outage scopedns must ride out
    # A session of its own: dockerd must not die with this run's process group.
    starter = await asyncio.create_subprocess_exec(
        "bash", str(ROOT / "tests/setup/start-docker.sh"), stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL, start_new_session=True)
    assert await starter.wait() == 0, "dockerd did not come back"
    return stopping, down, time.monotonic()


def judge(seen: list[Observation], prefix: str, truths: tuple[Truth, Truth, Truth],
          window: tuple[float, float]) -> tuple[list[Observation], ...]:
    """Answers that were wrong at any time, stale before the engine stopped, or stale after
    scopedns had caught up. While the engine stops, its containers die one by one (scopedns
    follows), so "no such name" is right then too; the alias may point at any of its holders
    as they go and come back."""
    before, restarted, after = truths
    stopping, recovered = window
    gone = ("NXDOMAIN",)
    allowed = {name: {before[name], restarted[name], after[name], gone} for name in after}
    allowed["svc"] |= {before[f"{prefix}-a"], before[f"{prefix}-b"], restarted[f"{prefix}-b"]}
    wrong = [o for o in seen if o.answer not in allowed[o.name]]
    early = [o for o in seen if o.at < stopping and o.answer != before[o.name]]
    late = [o for o in seen if o.at > recovered and o.answer != after[o.name]]
    return wrong, early, late


async def test_engine_restart_under_queries_is_never_wrong(
    engine_cli: Engine, scopedns: None
) -> None:
    p = engine_cli.prefix
    net = f"{p}-net"
    await engine_cli.network("net")
    stop_fast = ("--network", net, "--stop-timeout", "1")
    # a holds the alias first and does not come back; b and c restart with the engine.
    await engine_cli.run("a", *stop_fast, "--network-alias", "svc")
    await engine_cli.run("b", *stop_fast, "--network-alias", "svc", "--restart", "always")
    await engine_cli.run("c", *stop_fast, "--restart", "always")
    names = [f"{p}-a", f"{p}-b", f"{p}-c", f"{p}-d"]
    before = await truth(engine_cli, names, "svc")
    await until_answers(before, timeout=20)

    seen: list[Observation] = []
    stop = asyncio.Event()
    asking = asyncio.create_task(keep_asking([*names, "svc"], seen, stop))
    try:
        stopping, down, back = await restart_engine()
        await engine_cli.docker("version")  # the CLI answers again
        restarted = await truth(engine_cli, names, "svc")
        # Changes while scopedns is still reconnecting: c leaves, d takes the alias last.
        await engine_cli.docker("rm", "-f", f"{p}-c")
        await engine_cli.run("d", *stop_fast, "--network-alias", "svc")
        after = await truth(engine_cli, names, "svc")
        recovered = await until_answers(after, timeout=RECOVERY)
        await asyncio.sleep(2.0)
    finally:
        stop.set()
        await asking

    wrong, early, late = judge(seen, p, (before, restarted, after), (stopping, recovered))
    assert not wrong and not early and not late, (wrong[:5], early[:5], late[:5])
    assert not any(o.answer == ("SERVFAIL",) for o in seen), "synced scopedns never SERVFAILs"
    during = [o for o in seen if down <= o.at <= back]
    assert during, "queries were answered while the engine was down"
    print(f"\nengine restart: {len(seen)} answers, {len(during)} during a {back - down:.1f}s "
          f"outage, exact again {recovered - back:.1f}s after the engine was back, 0 wrong")
