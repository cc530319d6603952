# /metrics, /healthz and /readyz on loopback (resolver/http.py): the exposition is parsed with
# prometheus_client's own text parser, and each kind of query moves its own counter (reply
# cache, fast path, slow path, forwarded, refused, rate-limited, rejected; UDP and TCP);
# upstream outcomes and latency; TCP connections and refusals; table sizes; readiness before
# and after the first sync and while the engine is away. GET /v1/clients answers JSON.
from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from ipaddress import ip_network

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import dns.rrset
import pytest
from prometheus_client.parser import text_string_to_metric_families

from resolver.config import UDP_IO, Config
from resolver.http import HttpServer, readiness, start_http
from resolver.model import EngineState
from resolver.server import Server
from resolver.stats import EngineStats
from resolver.table import NameTable
from resolver.views import HostViewPolicy
from testkit.topology import Topology, attach, container, network
from tests.fakes import FakeUpstream

NET = network("metnet", "172.61.0.0/24")
TOPOLOGY = Topology([NET], [container("web", attach(NET, 2, "app"))])
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = await FakeUpstream().start()
    yield fake
    fake.close()


async def start(upstream: FakeUpstream | None, table: NameTable | None = None,
                engine: EngineStats | None = None, **overrides: object
                ) -> tuple[Server, HttpServer]:
    upstreams = (("127.0.0.1", upstream.port),) if upstream else ()
    config = Config(listen=(("127.0.0.1", 0),), upstreams=upstreams, upstream_timeout=0.3,
                    upstream_budget=1.0, http=("127.0.0.1", 0), **overrides)  # type: ignore[arg-type]
    server = Server(config, table if table is not None else TOPOLOGY.table())
    await server.start()
    http = await start_http(server, engine, "the test engine")
    assert http is not None
    return server, http


async def stop(server: Server, http: HttpServer) -> None:
    await http.close()
    await server.close()


async def get(http: HttpServer, path: str) -> tuple[int, str]:
    assert http.address is not None
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{http.address[1]}{path}") as response:
        return response.status, await response.text()


async def scrape(http: HttpServer) -> Samples:
    status, text = await get(http, "/metrics")
    assert status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("scopedns_")
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def queries(samples: Samples, **labels: str) -> float:
    """scopedns_queries_total summed over the series matching `labels`."""
    return sum(value for (name, have), value in samples.items()
               if name == "scopedns_queries_total" and set(labels.items()) <= have)


async def ask(server: Server, query: dns.message.Message, tcp: bool = False,
              source: str = "127.0.0.1") -> dns.message.Message:
    port = server.addresses[0][1]
    if tcp:
        return await dns.asyncquery.tcp(query, "127.0.0.1", port=port, timeout=3,
                                        source=source)
    return await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=3, source=source)


@pytest.mark.parametrize("udp_io", UDP_IO)
async def test_each_kind_of_query_moves_its_own_counter(upstream: FakeUpstream,
                                                        udp_io: str) -> None:
    # 127.0.0.1 sees the host view; 127.0.0.2 and .3 are strangers; 10 queries per source
    # at once, then 1 a second. Counted alike whoever reads UDP (--udp-io).
    table = TOPOLOGY.table(host_view=HostViewPolicy((ip_network("127.0.0.1/32"),)))
    server, http = await start(upstream, table, rate_limit=1.0, rate_limit_burst=10.0,
                               udp_io=udp_io)
    try:
        before = await scrape(http)
        assert queries(before) == 0
        await ask(server, dns.message.make_query("web", "A"))  # fast path
        await ask(server, dns.message.make_query("web", "A"))  # kept reply
        await ask(server, dns.message.make_query("web", "AAAA"), tcp=True)
        slow = dns.message.make_query("app", "A")
        slow.authority.append(dns.rrset.from_text("app.", 0, "IN", "A", "192.0.2.9"))
        await ask(server, slow)  # an authority record: dnspython's path
        forwarded = await ask(server, dns.message.make_query("x.invalid", "A"))
        stranger = await ask(server, dns.message.make_query("web", "A"), source="127.0.0.2")
        limited = [await ask(server, dns.message.make_query("web", "A"), source="127.0.0.3")
                   for _ in range(12)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as bad:
            bad.setblocking(False)
            bad.connect(server.addresses[0])
            bad.send(b"\x12\x34\x78\x00\x00\x01" + b"\x00" * 6 + b"\x00\x00\x01\x00\x01")
            # opcode 15: NOTIMP
            await asyncio.wait_for(asyncio.get_running_loop().sock_recv(bad, 512), 3)
        after = await scrape(http)
    finally:
        await stop(server, http)
    assert forwarded.rcode() == dns.rcode.NOERROR and stranger.rcode() == dns.rcode.REFUSED
    assert {reply.rcode() for reply in limited} == {dns.rcode.REFUSED}
    assert queries(after, how="fast", transport="udp", qtype="A", rcode="NOERROR") == 1
    assert queries(after, how="reply_cache", qtype="A") == 1
    assert queries(after, how="fast", transport="tcp", qtype="AAAA") == 1
    assert queries(after, how="slow", qtype="A") == 1
    assert queries(after, how="forwarded", rcode="NOERROR") == 1
    # .2 once and .3 ten times refused as strangers, then .3 limited (a refill may let one
    # more through as a stranger on a slow machine).
    refused = queries(after, how="refused", rcode="REFUSED")
    rate_limited = queries(after, how="rate_limited", rcode="REFUSED")
    assert refused + rate_limited == 13 and rate_limited >= 1 and refused >= 11
    assert queries(after, how="rejected", rcode="NOTIMP") == 1
    assert after[("scopedns_upstream_tries_total", frozenset(
        {("upstream", f"127.0.0.1:{upstream.port}"), ("outcome", "answer")}))] == 1
    assert after[("scopedns_upstream_latency_seconds_count", frozenset(
        {("upstream", f"127.0.0.1:{upstream.port}")}))] == 1
    assert after[("scopedns_tcp_accepted_total", frozenset())] == 1
    assert after[("scopedns_table_containers", frozenset())] == 1
    assert after[("scopedns_table_names", frozenset())] == 3  # web, app, its short ID


async def test_upstream_failures_are_counted_by_outcome(upstream: FakeUpstream) -> None:
    upstream.then_answer = True
    server, http = await start(upstream)
    try:
        for name in ("servfail.invalid", "refused.invalid", "wrongid.invalid", "silent.invalid"):
            await ask(server, dns.message.make_query(name, "A"))
        samples = await scrape(http)
    finally:
        await stop(server, http)
    tries = {dict(labels)["outcome"]: value for (name, labels), value in samples.items()
             if name == "scopedns_upstream_tries_total"}
    assert tries == {"answer": 1, "servfail": 1, "refused": 1, "timeout": 1, "error": 0,
                     "spoof_dropped": 1}
    assert queries(samples, how="forwarded", rcode="SERVFAIL") == 3


async def test_tcp_refusals_are_counted(upstream: FakeUpstream) -> None:
    """A client at its cap whose one connection is busy (a forward to a silent upstream in
    flight) is refused a second one; an idle one would have been replaced instead."""
    server, http = await start(upstream, tcp_max_per_source=1)
    try:
        held = await asyncio.open_connection("127.0.0.1", server.addresses[0][1])
        wire = dns.message.make_query("silent.invalid", "A").to_wire()
        held[1].write(len(wire).to_bytes(2, "big") + wire)
        await held[1].drain()
        await asyncio.sleep(0.1)  # the query is read and its forward is waiting
        reader, writer = await asyncio.open_connection("127.0.0.1", server.addresses[0][1])
        assert await asyncio.wait_for(reader.read(10), 3) == b""
        samples = await scrape(http)
        writer.close()
        held[1].close()
    finally:
        await stop(server, http)
    assert samples[("scopedns_tcp_refused_total", frozenset())] == 1
    assert samples[("scopedns_tcp_connections", frozenset())] == 1


async def test_readyz_waits_for_the_first_sync_then_says_how_stale(
        upstream: FakeUpstream) -> None:
    engine = EngineStats()
    table = NameTable()
    server, http = await start(upstream, table, engine)
    try:
        assert (await get(http, "/healthz"))[0] == 200
        engine.lost("connection refused")
        status, body = await get(http, "/readyz")
        assert status == 503 and "first full sync" in body and "connection refused" in body
        table.replace_all(EngineState(tuple(TOPOLOGY.networks), tuple(TOPOLOGY.containers)))
        engine.cycle_synced()
        engine.synced(1, 0, 0)
        status, body = await get(http, "/readyz")
        assert status == 200 and body.startswith("ready: following")
        engine.lost("event stream ended")
        status, body = await get(http, "/readyz")
        assert status == 200 and "stale" in body and "unreachable for" in body
        samples = await scrape(http)
        assert samples[("scopedns_engine_connected", frozenset())] == 0
        assert samples[("scopedns_engine_disconnected_seconds", frozenset())] >= 0
    finally:
        await stop(server, http)


def test_readiness_body_reports_the_outage_length() -> None:
    engine = EngineStats(clock=lambda: 1000.0)
    engine.cycle_synced()
    engine.synced(0, 0, 0)
    engine.lost("connection refused")
    state = readiness(True, engine, "the engine at unix:///x", now=1042.5)
    assert state.ready and "unreachable for 42.5s" in state.body


async def test_clients_endpoint_explains_and_rejects_bad_addresses(
        upstream: FakeUpstream) -> None:
    server, http = await start(upstream)
    try:
        status, text = await get(http, "/v1/clients/172.61.0.2?name=app")
        assert status == 200 and '"view": "container"' in text and '"172.61.0.2"' in text
        status, text = await get(http, "/v1/clients/not-an-address")
        assert status == 400 and "not an IP address" in text
    finally:
        await stop(server, http)


def test_kept_reply_hits_are_labelled_and_bounded() -> None:
    """Hits are counted per kept reply and folded into labelled counts: by the reply's type
    and rcode, and at most MAX_HIT_KEYS distinct replies are held between folds."""
    from resolver.stats import MAX_HIT_KEYS, How, QueryStats, query_key

    stats = QueryStats()
    for index in range(MAX_HIT_KEYS + 5):
        reply = dns.message.make_response(dns.message.make_query(f"n{index}", "AAAA"))
        reply.set_rcode(dns.rcode.NXDOMAIN)
        wire = reply.to_wire()
        stats.hit(wire, "127.0.0.1", wire[2:])
        stats.hit(wire, "127.0.0.1", wire[2:])
    assert len(stats.hits) <= MAX_HIT_KEYS
    stats.fold()
    assert stats.counts == {query_key(False, 28, dns.rcode.NXDOMAIN, How.REPLY_CACHE):
                            2 * (MAX_HIT_KEYS + 5)}


@pytest.mark.parametrize("parts", [(True, 1, 0, 1), (False, 65535, 15, 7), (True, 65536, 16, 0),
                                   (False, 0, 16, 6)])
def test_query_keys_pack_and_unpack(parts: tuple[bool, int, int, int]) -> None:
    from resolver.stats import query_key, unpack_query_key

    assert unpack_query_key(query_key(*parts)) == parts


def test_a_query_without_a_question_counts_under_no_type() -> None:
    from resolver.metrics import query_families
    from resolver.stats import NO_REPLY, How, QueryStats

    stats = QueryStats()
    stats.note(b"\x12\x34\x01\x00\x00\x01", "127.0.0.1", False, None, How.REJECTED)
    [family] = list(query_families(stats))
    assert [s.labels for s in family.samples] == [
        {"transport": "udp", "qtype": "none", "rcode": "none", "how": "rejected"}]
    assert NO_REPLY == 16


async def test_health_gauges_follow_the_table() -> None:
    """A shared name whose first holder is unhealthy while the second is ready has failed
    over: /metrics says so, and says it no more once the first recovers."""
    first = replace(container("one", attach(NET, 3, "db")), ready=False)
    second = container("two", attach(NET, 4, "db"))
    table = Topology([NET], [first, second]).table()
    server, http = await start(None, table)
    try:
        samples = await scrape(http)
        assert samples[("scopedns_health_containers_not_ready", frozenset())] == 1
        assert samples[("scopedns_health_failed_over_names", frozenset())] == 1
        table.upsert_container(replace(first, ready=True))
        samples = await scrape(http)
        assert samples[("scopedns_health_containers_not_ready", frozenset())] == 0
        assert samples[("scopedns_health_failed_over_names", frozenset())] == 0
    finally:
        await stop(server, http)
