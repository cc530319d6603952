# The server on real loopback sockets (port 0), on asyncio's loop and on uvloop, with UDP read
# by the receive thread and by the loop (the `serve` fixture runs each test on each): UDP and
# TCP answers, several TCP queries per connection answered in order, a forwarded answer
# relayed, idle TCP connections closed, and the CLI's one-line errors. Upstream faults,
# failover, the budget and the forward cap live in tests/test_upstream_faults.py.
from __future__ import annotations

import asyncio
import resource
import socket
import struct
import subprocess
import sys
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest
import uvloop

from resolver.config import Config
from resolver.framing import TcpFramer
from resolver.server import UDP_RECEIVE_BUFFER, Server, enlarge_receive_buffer
from resolver.transport import client_key
from testkit.topology import Topology, attach, container, network
from tests.conftest import Fakes
from tests.fakes import FAKE_ADDRESS, FakeUpstream
from tests.servers import Serve, addresses, loopback_config, port

NET = network("srvnet", "172.60.0.0/24")
TABLE_TOPOLOGY = Topology([NET], [container("web", attach(NET, 2, "app"))])
LOOPNET = network("loopnet", "127.64.0.0/24")


@pytest.fixture
async def upstream(fakes: Fakes) -> FakeUpstream:
    return await fakes()


async def start(serve: Serve, upstream: FakeUpstream, **fields: Any) -> Server:
    """A server over TABLE_TOPOLOGY forwarding to `upstream` with short timeouts."""
    return await serve(TABLE_TOPOLOGY.table(), loopback_config(
        upstream, upstream_timeout=0.3, upstream_budget=1.0, **fields))


async def udp(server: Server, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.udp(query, "127.0.0.1", port=port(server), timeout=3)


async def test_server_tests_run_on_asyncio_and_on_uvloop(
        serve: Serve, upstream: FakeUpstream, request: pytest.FixtureRequest) -> None:
    """Production runs on uvloop: each test using `serve` runs on the loop its ID names."""
    server = await start(serve, upstream)
    on_uvloop = isinstance(asyncio.get_running_loop(), uvloop.Loop)
    assert on_uvloop == ("[uvloop" in request.node.name)
    assert addresses(await udp(server, "web")) == ["172.60.0.2"]


async def test_udp_and_tcp_local_answers(serve: Serve, upstream: FakeUpstream) -> None:
    server = await start(serve, upstream)
    assert addresses(await udp(server, "web")) == ["172.60.0.2"]
    reply = await dns.asyncquery.tcp(dns.message.make_query("APP", "A"), "127.0.0.1",
                                     port=port(server), timeout=3)
    assert addresses(reply) == ["172.60.0.2"] and upstream.seen == []


async def test_tcp_pipelined_queries_answered_in_order(serve: Serve,
                                                       upstream: FakeUpstream) -> None:
    server = await start(serve, upstream)
    names = ["web", "x.invalid", "app", "nxdomain.invalid", "web"]
    queries = [dns.message.make_query(n, "A") for n in names]
    reader, writer = await asyncio.open_connection("127.0.0.1", port(server))
    writer.write(b"".join(struct.pack("!H", len(w)) + w for w in
                          (q.to_wire() for q in queries)))
    framer, replies = TcpFramer(), list[bytes]()
    while len(replies) < len(names):
        replies += framer.feed(await asyncio.wait_for(reader.read(4096), 3))
    writer.close()
    got = [dns.message.from_wire(r) for r in replies]
    assert [r.id for r in got] == [q.id for q in queries]
    assert addresses(got[1]) == [FAKE_ADDRESS]
    assert got[3].rcode() == dns.rcode.NXDOMAIN


async def test_forwarded_answer_is_relayed_with_the_clients_id(serve: Serve,
                                                               upstream: FakeUpstream) -> None:
    server = await start(serve, upstream)
    query = dns.message.make_query("relay.invalid", "A")
    reply = await dns.asyncquery.udp(query, "127.0.0.1", port=port(server), timeout=3)
    assert reply.id == query.id and addresses(reply) == [FAKE_ADDRESS]
    nx = await udp(server, "nxdomain.invalid")
    assert nx.rcode() == dns.rcode.NXDOMAIN
    tc = await udp(server, "tc.invalid")
    assert tc.flags & dns.flags.TC


async def test_idle_tcp_connection_is_closed(serve: Serve, upstream: FakeUpstream) -> None:
    server = await start(serve, upstream, tcp_idle=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", port(server))
    assert await asyncio.wait_for(reader.read(10), 3) == b""
    writer.close()


async def test_a_client_at_its_tcp_cap_is_still_answered(serve: Serve,
                                                         upstream: FakeUpstream) -> None:
    """1,000 idle connections from one client, then a normal TCP query from that same client:
    each new connection past its cap replaces its longest-idle one, so the query is answered
    (docs/failures.md)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2500:  # both ends of 1,000 connections live in this process
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    server = await start(serve, upstream, tcp_max_per_source=8)
    held = [await asyncio.open_connection("127.0.0.1", port(server)) for _ in range(1000)]
    reply = await dns.asyncquery.tcp(dns.message.make_query("web", "A"), "127.0.0.1",
                                     port=port(server), timeout=3)
    assert addresses(reply) == ["172.60.0.2"]
    closed = [r for r, _ in held[:-8] if await asyncio.wait_for(r.read(10), 3) == b""]
    assert len(closed) == len(held) - 8  # the oldest ones made room, the newest are kept
    for _, writer in held:
        writer.close()


async def test_udp_burst_of_repeated_queries_each_get_their_own_reply(
        serve: Serve, upstream: FakeUpstream) -> None:
    """Many clients asking the same names at once (answered from kept replies after the first):
    each gets a reply with its own ID and its own spelling of the question."""
    server = await start(serve, upstream)
    queries = [dns.message.make_query(name, "A") for name in ("web", "WEB", "App") * 40]
    replies = await asyncio.gather(*(
        dns.asyncquery.udp(q, "127.0.0.1", port=port(server), timeout=3) for q in queries))
    for query, reply in zip(queries, replies, strict=True):
        assert reply.id == query.id and addresses(reply) == ["172.60.0.2"]
        assert reply.question[0].name.to_text() == query.question[0].name.to_text()
    assert not [name for _, name in upstream.seen if name.lower() in ("web.", "app.")]


async def test_a_burst_while_the_server_is_busy_loses_no_query(serve: Serve,
                                                               upstream: FakeUpstream) -> None:
    """2000 queries arrive while the loop is busy (here: sending them): the kernel holds them
    for the server (the default UDP buffer would drop most), and every one is answered."""
    server = await start(serve, upstream)
    count = 2000
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    enlarge_receive_buffer(client, UDP_RECEIVE_BUFFER)  # room for the 2000 replies
    try:
        wire = dns.message.make_query("web", "A").to_wire()
        for index in range(count):  # blocking sends: the server cannot read meanwhile
            client.sendto(struct.pack("!H", index) + wire[2:], ("127.0.0.1", port(server)))
        client.setblocking(False)
        loop, answered = asyncio.get_running_loop(), set[int]()
        async with asyncio.timeout(10):
            while len(answered) < count:
                answered.add(struct.unpack("!H", (await loop.sock_recv(client, 512))[:2])[0])
        assert answered == set(range(count))
    finally:
        client.close()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "resolver", *args], capture_output=True,
                          text=True, timeout=30)


# TEST-NET-1 addresses: valid upstreams, so that only their number is wrong.
FOUR_UPSTREAMS = [arg for n in range(1, 5) for arg in ("--upstream", f"192.0.2.{n}")]


@pytest.mark.parametrize(("args", "reason"), [
    (["serve", "--alias-order", "random"], "--alias-order"),
    (["serve", "--ttl", "-1"], "--ttl"),
    (["serve", "--listen", "not-an-address:x"], "--listen"),
    (["serve", "--upstream", "127.0.0.1:5353"],  # the default listen address: a loop
     "upstream 127.0.0.1:5353 is this server itself"),
    (["serve", "--upstream", "dns.example.invalid"], "dns.example.invalid"),
    (["serve", *FOUR_UPSTREAMS], "at most 3 upstreams, got 4"),
])
def test_bad_flags_exit_with_one_line(args: list[str], reason: str) -> None:
    result = run_cli(*args)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert reason in result.stderr


def test_unbindable_address_exits_with_one_line() -> None:
    result = run_cli("serve", "--listen", "192.0.2.1:5353", "--no-upstream",
                     "--docker", "unix:///nonexistent.sock")
    assert result.returncode == 1
    assert "cannot listen on 192.0.2.1:5353" in result.stderr


@pytest.mark.parametrize(("seen", "client"), [
    ("::ffff:172.60.0.2", "172.60.0.2"), ("172.60.0.2", "172.60.0.2"),
    ("::1", "::1"), ("::ffff:abcd", "::ffff:abcd"), ("fd00::2", "fd00::2"),
])
def test_an_ipv4_client_on_a_dual_stack_socket_is_the_same_client(seen: str, client: str) -> None:
    """Caps, rate limits and views key on the client: `a.b.c.d` and `::ffff:a.b.c.d` are one."""
    assert client_key(seen) == client


async def test_a_dual_stack_listener_gives_an_ipv4_client_its_own_view(
        serve: Serve, upstream: FakeUpstream) -> None:
    table = Topology([LOOPNET], [container("loopweb", attach(LOOPNET, 2, "app",
                                                                      links={"me": "loopweb"}))]
                     ).table()
    server = Server(Config(listen=(("::", 0),)), table)
    await server.start()
    try:
        query = dns.message.make_query("me", "A")
        reply = await dns.asyncquery.udp(query, "127.0.0.1", port=port(server), timeout=3,
                                         source="127.64.0.2")
        assert addresses(reply) == ["127.64.0.2"]  # its link alias: its own view
    finally:
        await server.close()
