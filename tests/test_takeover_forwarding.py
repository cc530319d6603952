# Takeover's forwarding parts without Docker (docs/takeover.md): one container flooding
# forwards is capped at a quarter of --max-forwards and leaves another container's forwards
# answered; under the shared total, everyone is capped; TCP forwards go to Docker's TCP port
# (its resolver listens on one port per transport); a container's forwarded query is counted
# and logged as that container's (docs/operations.md); and the ctnetlink tuple matcher that
# picks the UDP flows to 127.0.0.11:53.
from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import dns.message
import pytest

from resolver.answer import Policy
from resolver.conntrack import (
    CTA_IP_V4_DST,
    CTA_PROTO_DST_PORT,
    CTA_PROTO_NUM,
    CTA_TUPLE_IP,
    CTA_TUPLE_PROTO,
    NLA_F_NESTED,
    tuple_matches,
)
from resolver.exchange import Upstream
from resolver.forward import Forwarder, ForwardRefused, InFlight
from resolver.handler import Handler
from resolver.stats import How, QueryStats
from resolver.takeover import Client, TakeoverUdpListener
from resolver.transport import Resolution
from resolver.wire import Query, parse_query
from testkit.topology import Topology, attach, container, network
from tests.fakes import FakeUpstream


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream]]:
    udp_side = await FakeUpstream(mode="answer").start()
    tcp_side = await FakeUpstream(mode="answer").start()
    yield udp_side, tcp_side
    udp_side.close()
    tcp_side.close()


def query(name: str) -> tuple[Query, bytes]:
    data = dns.message.make_query(name, "A").to_wire()
    parsed = parse_query(data)
    assert isinstance(parsed, Query)
    return parsed, data


def forwarder(up: FakeUpstream, cap: int, total: InFlight,
              tcp_up: FakeUpstream | None = None) -> Forwarder:
    tcp = [Upstream("127.0.0.1", tcp_up.port)] if tcp_up else None
    return Forwarder([Upstream("127.0.0.1", up.port)], 2.0, 5.0, cap, total=total,
                     tcp_upstreams=tcp)


async def test_one_flooding_client_is_capped_and_another_is_still_answered(
        upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    up, _ = upstreams
    max_forwards = 8
    total = InFlight(max_forwards)
    flooder = forwarder(up, max_forwards // 4, total)
    quiet = forwarder(up, max_forwards // 4, total)
    # The flooder's forwards hang (a silent name) until they time out: it holds its quarter.
    hanging = [asyncio.create_task(flooder.forward(*query(f"silent.f{i}.invalid"), tcp=False))
               for i in range(max_forwards // 4)]
    await asyncio.sleep(0.05)
    with pytest.raises(ForwardRefused):
        await flooder.forward(*query("one.more.invalid"), tcp=False)
    reply = await quiet.forward(*query("quiet.invalid"), tcp=False)
    assert reply is not None and dns.message.from_wire(reply).answer
    assert total.count == max_forwards // 4
    for task in hanging:
        task.cancel()
    await asyncio.gather(*hanging, return_exceptions=True)
    assert total.count == 0 and flooder.in_flight == 0


async def test_the_shared_total_caps_every_client(
        upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    up, _ = upstreams
    total = InFlight(2)
    clients = [forwarder(up, 2, total) for _ in range(3)]
    hanging = [asyncio.create_task(c.forward(*query(f"silent.t{i}.invalid"), tcp=False))
               for i, c in enumerate(clients[:2])]
    await asyncio.sleep(0.05)
    with pytest.raises(ForwardRefused):
        await clients[2].forward(*query("third.invalid"), tcp=False)
    for task in hanging:
        task.cancel()
    await asyncio.gather(*hanging, return_exceptions=True)


async def test_tcp_forwards_go_to_the_tcp_port(
        upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    udp_side, tcp_side = upstreams
    both = forwarder(udp_side, 4, InFlight(16), tcp_side)
    assert await both.forward(*query("by-udp.invalid"), tcp=False) is not None
    assert await both.forward(*query("by-tcp.invalid"), tcp=True) is not None
    assert ("udp", "by-udp.invalid.") in udp_side.seen
    assert ("tcp", "by-tcp.invalid.") in tcp_side.seen
    assert all(name != "by-tcp.invalid." for _, name in udp_side.seen)


async def test_a_forwarded_query_is_counted_as_the_containers(
        upstreams: tuple[FakeUpstream, FakeUpstream]) -> None:
    """The query log and /metrics see a taken-over container's forwards as its own."""
    up, _ = upstreams
    net = network("tknet", "172.63.0.0/24")
    stats = QueryStats()
    seen: list[tuple[str, int]] = []
    stats.observers.append(lambda data, source, tcp, reply, how: seen.append((source, how)))
    handler = Handler(Topology([net], [container("web", attach(net, 2))]).table(), Policy(),
                      stats=stats)
    resolution = Resolution(handler, forwarder(up, 4, InFlight(16)))
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: TakeoverUdpListener(resolution, Client("172.63.0.2")),
        local_addr=("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setblocking(False)
    try:
        client.sendto(query("away.invalid")[1], transport.get_extra_info("sockname"))
        await asyncio.wait_for(loop.sock_recv(client, 512), 5)
    finally:
        client.close()
        transport.close()
    assert seen == [("172.63.0.2", How.FORWARDED)]


def attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    length = 4 + len(payload)
    head = struct.pack("=HH", length, kind | (NLA_F_NESTED if nested else 0))
    return head + payload + b"\0" * ((-length) % 4)


def orig_tuple(dst: str, proto: int, dport: int) -> bytes:
    ip_part = attr(1, socket.inet_aton("127.0.0.1")) + attr(CTA_IP_V4_DST, socket.inet_aton(dst))
    proto_part = (attr(CTA_PROTO_NUM, bytes([proto])) + attr(2, struct.pack("!H", 40000))
                  + attr(CTA_PROTO_DST_PORT, struct.pack("!H", dport)))
    return attr(CTA_TUPLE_IP, ip_part, True) + attr(CTA_TUPLE_PROTO, proto_part, True)


def test_conntrack_matcher_picks_udp_flows_to_127_0_0_11_53_only() -> None:
    dst = socket.inet_aton("127.0.0.11")
    assert tuple_matches(orig_tuple("127.0.0.11", 17, 53), dst, 17, 53)
    assert not tuple_matches(orig_tuple("127.0.0.11", 6, 53), dst, 17, 53)
    assert not tuple_matches(orig_tuple("127.0.0.11", 17, 5353), dst, 17, 53)
    assert not tuple_matches(orig_tuple("10.0.0.1", 17, 53), dst, 17, 53)
    assert not tuple_matches(b"\x01\x00", dst, 17, 53)  # truncated: ignored, never raises
