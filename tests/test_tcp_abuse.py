# TCP abuse against a real loopback server with small caps and a short idle timeout, on
# asyncio's loop and on uvloop, whose transports pause and buffer their own way (docs/failures.md:
# a slow or hostile client cannot starve others): silent connections, half prefixes and half
# frames, a length prefix larger than the data, a zero-length frame, a 65535-byte frame trickled
# a byte at a time, 1500 idle connections from many 127.x.y.z sources against a total cap of
# 1024, and a client that pipelines hundreds of queries without reading. Meanwhile, other
# clients are answered over TCP and UDP. Also the slot bookkeeping (TcpClients) on its own.
from __future__ import annotations

import asyncio
import resource
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from resolver.answer import AliasOrder
from resolver.framing import TcpFramer, frame
from resolver.server import Server
from resolver.tcp import MAX_PENDING, TcpClients, TcpConnection
from testkit.topology import Topology, attach, container, network
from tests.conftest import Fakes
from tests.fakes import FakeUpstream
from tests.servers import Serve, addresses, loopback_config, port

NET = network("abusenet", "172.62.0.0/16")
# 200 holders of one name: a 3 KB reply, so a client that does not read falls behind fast.
HOLDERS = [container(f"h{i:03d}", attach(NET, 256 + i, "shared")) for i in range(200)]
TOPOLOGY = Topology([NET], [container("web", attach(NET, 2)), *HOLDERS])
IDLE = 0.5
BOUND = 10.0  # seconds any single wait may take on a loaded machine before the test fails


async def start(serve: Serve, *upstreams: FakeUpstream, **fields: Any) -> Server:
    """A server over TOPOLOGY with small TCP caps and a short idle timeout unless `fields`
    say otherwise; holders of a shared name answered in order."""
    settings: dict[str, Any] = {"tcp_idle": IDLE, "tcp_max_connections": 64,
                                "tcp_max_per_source": 16, **fields}
    return await serve(TOPOLOGY.table(), loopback_config(
        *upstreams, alias_order=AliasOrder.ORDERED, **settings))


async def connect(server: Server, source: str = "127.0.0.1"
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port(server), local_addr=(source, 0))


async def others_are_answered(server: Server) -> None:
    """A fresh client gets its answer over TCP and over UDP."""
    query = dns.message.make_query("web", "A")
    for ask in (dns.asyncquery.tcp, dns.asyncquery.udp):
        reply = await ask(query, "127.0.0.1", port=port(server), timeout=BOUND)
        assert addresses(reply) == ["172.62.0.2"]


async def closed_without_reply(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), BOUND) == b""


QUERY = dns.message.make_query("web", "A").to_wire()


@pytest.mark.parametrize("sent", [
    pytest.param(b"", id="never-sends"),
    pytest.param(b"\x00", id="half-prefix"),
    pytest.param(b"\x00\x40" + QUERY[:10], id="prefix-larger-than-data"),
    pytest.param(frame(QUERY)[:-4], id="half-frame"),
])
async def test_stalled_connections_are_closed_while_others_are_answered(serve: Serve,
                                                                       sent: bytes) -> None:
    server = await start(serve)
    stalled = [await connect(server) for _ in range(8)]
    for _, writer in stalled:
        writer.write(sent)
    await others_are_answered(server)
    for reader, writer in stalled:
        assert await closed_without_reply(reader)
        writer.close()
    assert len(server.tcp_clients) == 0


async def test_zero_length_frame_is_skipped_and_the_stream_stays_in_step(serve: Serve) -> None:
    server = await start(serve)
    reader, writer = await connect(server)
    writer.write(b"\x00\x00" + frame(QUERY))
    length = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), BOUND))[0]
    reply = dns.message.from_wire(await reader.readexactly(length))
    assert reply.id == dns.message.from_wire(QUERY).id and reply.answer
    writer.close()


async def test_a_frame_trickled_a_byte_at_a_time_does_not_hold_the_slot(serve: Serve) -> None:
    """Idle is measured between whole queries, not bytes: 65535 announced, one byte every
    50 ms (it would take an hour), and the server closes it after the idle timeout."""
    server = await start(serve)
    reader, writer = await connect(server)
    eof = asyncio.ensure_future(reader.read())
    writer.write(b"\xff\xff")
    for _ in range(int(BOUND / 0.05)):
        if eof.done():
            break
        writer.write(b"x")
        await asyncio.sleep(0.05)
    assert eof.done() and eof.result() == b""
    await others_are_answered(server)
    writer.close()


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"needs {wanted} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def test_thousands_of_idle_connections_do_not_lock_out_a_fresh_client(serve: Serve) -> None:
    """1500 idle connections from 1500 sources against a total cap of 1024: each connection
    past the cap closes the one idle the longest, the server never holds more than the cap,
    and a fresh client still gets in over TCP (and UDP), even when every held connection has
    a frame half sent."""
    raise_fd_limit(4096)
    server = await start(serve, tcp_idle=120.0, tcp_max_connections=1024, tcp_max_per_source=4)
    sources = [f"127.10.{i // 200}.{i % 200 + 1}" for i in range(1500)]
    held = []
    for batch in range(0, len(sources), 100):
        held += await asyncio.gather(*(connect(server, s) for s in sources[batch:batch + 100]))
        assert len(server.tcp_clients) <= 1024
    for _, writer in held:
        writer.write(b"\x00\x40")  # a frame left open does not make a connection busy
    await until(lambda: all(c.buffered == 2 for c in server.tcp_clients))
    await others_are_answered(server)
    assert len(server.tcp_clients) <= 1024
    assert await closed_without_reply(held[0][0])  # the longest idle went first
    live = {connection.source for connection in server.tcp_clients}
    assert sources[-1] in live and sources[0] not in live
    for _, writer in held:
        writer.close()


@dataclass(eq=False)  # hashed by identity, like a protocol object
class FakeConnection:
    source: str
    idle: bool = True
    closed: bool = False

    def is_idle(self) -> bool:
        return self.idle

    def close(self) -> None:
        self.closed = True


def slot(connection: FakeConnection) -> TcpConnection:
    """A stand-in as TcpClients takes it: the bookkeeping reads only `source`, `is_idle()`
    and `close()`, which FakeConnection has."""
    return cast(TcpConnection, connection)


def test_slots_reclaim_the_longest_idle_and_refuse_when_all_are_busy() -> None:
    clients = TcpClients(max_total=3, max_per_source=2)
    a, b, c = FakeConnection("10.0.0.1"), FakeConnection("10.0.0.2"), FakeConnection("10.0.0.3")
    assert all(clients.admit(slot(x)) for x in (a, b, c))
    clients.touch(slot(a))  # a asked something: b is now the longest idle
    d = FakeConnection("10.0.0.4")
    assert clients.admit(slot(d)) and b.closed and not a.closed
    for x in (a, c, d):
        x.idle = False
    assert not clients.admit(slot(FakeConnection("10.0.0.5")))
    clients.remove(slot(a))
    assert clients.admit(slot(FakeConnection("10.0.0.5"))) and len(clients) == 3


def test_a_client_at_its_cap_replaces_its_own_longest_idle_connection() -> None:
    """An idle connection is worth less than a new query: at its own cap a client's new
    connection closes that client's longest-idle one, never another client's."""
    clients = TcpClients(max_total=10, max_per_source=2)
    other = FakeConnection("10.0.0.2")
    first, second, third = (FakeConnection("10.0.0.1") for _ in range(3))
    assert all(clients.admit(slot(x)) for x in (first, other, second))
    assert clients.admit(slot(third)) and first.closed
    assert not second.closed and not other.closed and len(clients) == 3


def test_a_client_at_its_cap_with_only_busy_connections_is_refused() -> None:
    clients = TcpClients(max_total=10, max_per_source=2)
    same = [FakeConnection("10.0.0.1") for _ in range(3)]
    for connection in same:
        connection.idle = False
    assert [clients.admit(slot(x)) for x in same] == [True, True, False]
    assert not any(x.closed for x in same) and clients.admit(slot(FakeConnection("10.0.0.2")))


PIPELINED = 1000


async def test_a_client_that_pipelines_without_reading_is_paused_not_buffered(serve: Serve) -> None:
    """1000 queries for a 3 KB answer (3 MB of replies) without reading: the server stops
    reading that client and holds a bounded amount for it, others are answered meanwhile,
    and once it reads it gets every reply, in order."""
    server = await start(serve, tcp_idle=BOUND * 3)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    sock.bind(("127.0.0.5", 0))
    await loop.sock_connect(sock, ("127.0.0.1", port(server)))
    queries = [dns.message.make_query("shared", "A") for _ in range(PIPELINED)]
    sending = loop.create_task(
        loop.sock_sendall(sock, b"".join(frame(q.to_wire()) for q in queries)))
    connection = await until_paused(server, "127.0.0.5")
    assert connection.buffered < 512 * 1024  # bounded, far below the 3 MB asked for
    await others_are_answered(server)
    ids = await read_replies(sock, PIPELINED)
    await sending
    sock.close()
    assert ids == [q.id for q in queries]


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(int(BOUND / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the server never got there")


async def until_paused(server: Server, source: str) -> TcpConnection:
    def paused() -> TcpConnection | None:
        return next((c for c in server.tcp_clients
                     if c.source == source and c.reading_paused), None)

    await until(lambda: paused() is not None)
    connection = paused()
    assert connection is not None
    return connection


async def read_replies(sock: socket.socket, count: int) -> list[int]:
    loop, framer, ids = asyncio.get_running_loop(), TcpFramer(), list[int]()
    while len(ids) < count:
        data = await asyncio.wait_for(loop.sock_recv(sock, 65536), BOUND)
        assert data, "closed before every reply arrived"
        ids += [struct.unpack("!H", m[:2])[0] for m in framer.feed(data)]
    return ids


async def test_pipelined_slow_forwards_pause_reading_and_keep_the_order(serve: Serve,
                                                                      fakes: Fakes) -> None:
    """200 pipelined queries that all go to a silent upstream: past MAX_PENDING waiting
    replies the server stops reading, and every query gets its SERVFAIL, in order."""
    server = await start(serve, await fakes("silent"), upstream_timeout=0.2,
                         upstream_budget=0.5, tcp_idle=BOUND * 3)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port(server)))
    queries = [dns.message.make_query(f"q{i}.invalid", "A") for i in range(200)]
    assert len(queries) > MAX_PENDING
    await loop.sock_sendall(sock, b"".join(frame(q.to_wire()) for q in queries))
    await until_paused(server, "127.0.0.1")
    ids = await read_replies(sock, len(queries))
    sock.close()
    assert ids == [q.id for q in queries]
