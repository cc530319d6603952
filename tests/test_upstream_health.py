# Upstream health (resolver/health.py, docs/forwarding-cache.md): an upstream that stops
# answering is tried last after a few failures in a row, so a dead first server costs a few
# timeouts instead of one per query; it is probed beside real queries and back in its turn once
# it answers. The plan with an injected clock, then on a loopback server with fake upstreams.
from __future__ import annotations

import asyncio
import time

import dns.rcode
import pytest

from resolver.health import DOWN_AFTER, UpstreamHealth
from resolver.server import Server
from tests.conftest import Fakes
from tests.fakes import FAKE_ADDRESS
from tests.servers import Serve, addresses
from tests.test_upstream_faults import ask, start

TIMEOUT = 0.3  # per try: a timeout in these tests


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_plan_keeps_order_until_an_upstream_fails_k_times_in_a_row() -> None:
    clock = Clock()
    health = UpstreamHealth(["a", "b", "c"], down_after=3, probe_every=5.0, clock=clock)
    for _ in range(2):
        health.failed(0)
    health.succeeded(0)  # the count is of failures in a row
    health.failed(0)
    health.failed(0)
    assert health.plan() == ([0, 1, 2], None)
    health.failed(0)
    assert health.plan() == ([1, 2, 0], None)  # down: last; first probe after probe_every


def test_down_upstream_is_probed_at_most_every_interval_and_back_on_success() -> None:
    clock = Clock()
    health = UpstreamHealth(["a", "b"], down_after=1, probe_every=5.0, clock=clock)
    health.failed(0)
    clock.now += 5.0
    assert health.plan() == ([1, 0], 0)
    assert [health.plan()[1] for _ in range(100)] == [None] * 100  # one probe per interval
    health.failed(0)  # the probe timed out
    clock.now += 4.9
    assert health.plan()[1] is None
    clock.now += 0.1
    assert health.plan() == ([1, 0], 0)
    health.succeeded(0)  # the probe was answered
    assert health.plan() == ([0, 1], None)


def test_every_upstream_down_means_each_query_tries_them_all_in_order() -> None:
    health = UpstreamHealth(["a", "b"], down_after=1, probe_every=5.0, clock=Clock())
    health.failed(1)
    health.failed(0)
    assert health.plan() == ([0, 1], None)


# ----- on a loopback server ---------------------------------------------------------------------

def quick_probes(server: Server, probe_every: float) -> None:
    forwarder = server.resolution.forwarder
    assert forwarder is not None
    forwarder.health = UpstreamHealth([str(u) for u in forwarder.upstreams],
                                      probe_every=probe_every)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_dead_first_upstream_costs_a_few_timeouts_not_one_per_query(
        serve: Serve, fakes: Fakes, transport: str) -> None:
    dead, alive = await fakes("silent"), await fakes()
    server = await start(serve, dead, alive, timeout=TIMEOUT, cache_size=0)
    queries = 20
    began = time.monotonic()
    replies = [await ask(server, f"q{n}.invalid", transport) for n in range(queries)]
    elapsed = time.monotonic() - began
    assert all(addresses(r) == [FAKE_ADDRESS] for r in replies)
    assert len(alive.seen) == queries
    # Down after DOWN_AFTER timeouts; then at most one probe per 5 s (PROBE_EVERY).
    assert DOWN_AFTER <= len(dead.seen) <= DOWN_AFTER + 1 + int(elapsed / 5)
    # A correctness bound, not a benchmark: without health this takes queries x TIMEOUT.
    assert elapsed < queries * TIMEOUT / 2


async def test_upstream_that_comes_back_is_used_again(serve: Serve, fakes: Fakes) -> None:
    first, second = await fakes("silent"), await fakes()
    server = await start(serve, first, second, timeout=TIMEOUT, cache_size=0)
    quick_probes(server, 0.2)
    for n in range(DOWN_AFTER + 2):
        assert addresses(await ask(server, f"before{n}.invalid")) == [FAKE_ADDRESS]
    first.mode = "answer"  # it answers again
    for n in range(50):  # bounded: a probe goes out 0.2 s after the last one at most
        await ask(server, f"probe{n}.invalid")
        if not server.resolution.forwarder.health.is_down(0):  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.05)
    answered_by_second = len(second.seen)
    for n in range(5):
        assert addresses(await ask(server, f"after{n}.invalid")) == [FAKE_ADDRESS]
    assert [name for _, name in first.seen[-5:]] == [f"after{n}.invalid." for n in range(5)]
    assert len(second.seen) == answered_by_second  # the first one is in its turn again


async def test_upstream_answering_servfail_is_not_taken_out_of_turn(serve: Serve,
                                                                   fakes: Fakes) -> None:
    """SERVFAIL may be about one name (a broken zone): the next upstream is asked for that
    query, but the first keeps its place."""
    failing, good = await fakes("servfail"), await fakes()
    server = await start(serve, failing, good, timeout=TIMEOUT, cache_size=0)
    for n in range(DOWN_AFTER + 3):
        reply = await ask(server, f"s{n}.invalid")
        assert reply.rcode() == dns.rcode.NOERROR
    assert len(failing.seen) == DOWN_AFTER + 3  # asked first every time


async def test_every_upstream_dead_still_gets_servfail_and_each_is_tried(
        serve: Serve, fakes: Fakes) -> None:
    dead = [await fakes("silent"), await fakes("silent")]
    server = await start(serve, *dead, timeout=TIMEOUT, budget=2.0, cache_size=0)
    for n in range(DOWN_AFTER + 1):
        reply = await ask(server, f"void{n}.invalid")
        assert reply.rcode() == dns.rcode.SERVFAIL
    assert [len(d.seen) for d in dead] == [DOWN_AFTER + 1] * 2
