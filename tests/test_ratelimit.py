# --rate-limit (resolver/ratelimit.py): the token bucket on a hand-driven clock (answered up to
# the limit, REFUSED up to twice it, 1 in 2 past that over UDP, never dropped over TCP; refills;
# bounded memory; one log line per source per interval), the handler hook, the flag, and a real
# loopback server where a flooding source is limited while another gets every answer.
from __future__ import annotations

import asyncio
import logging
import socket

import dns.message
import dns.rcode
import pytest

from resolver.answer import Policy
from resolver.cli import build_parser, config_from_args
from resolver.config import Config
from resolver.handler import Handler
from resolver.ratelimit import LOG_INTERVAL, Limited, RateLimiter, limited_reply
from testkit.topology import Topology, attach, container, network
from tests.servers import Serve, port

NET = network("rlnet", "172.61.0.0/24")
TOPOLOGY = Topology([NET], [container("web", attach(NET, 2))])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verdicts(limiter: RateLimiter, source: str, count: int, tcp: bool = False) -> list[str]:
    return [str(v.value) if v else "ok" for v in
            (limiter.check(source, tcp) for _ in range(count))]


def test_a_flood_is_answered_then_refused_then_thinned() -> None:
    limiter = RateLimiter(10, clock=Clock())
    got = verdicts(limiter, "10.0.0.1", 40)
    assert got[:10] == ["ok"] * 10
    assert got[10:20] == ["refuse"] * 10
    assert got[20:] == ["drop", "refuse"] * 10  # past twice the limit: 1 in 2 answered


def test_tcp_is_refused_but_never_dropped() -> None:
    limiter = RateLimiter(5, clock=Clock())
    got = verdicts(limiter, "10.0.0.1", 30, tcp=True)
    assert got[:5] == ["ok"] * 5 and set(got[5:]) == {"refuse"}


def test_a_source_within_the_limit_is_never_limited() -> None:
    clock = Clock()
    limiter = RateLimiter(10, clock=clock)
    for _ in range(200):
        assert limiter.check("10.0.0.1", False) is None
        clock.now += 0.1


def test_another_source_is_not_affected_by_a_flood() -> None:
    limiter = RateLimiter(3, clock=Clock())
    verdicts(limiter, "10.0.0.1", 100)
    assert verdicts(limiter, "10.0.0.2", 3) == ["ok"] * 3


def test_the_bucket_refills_with_time_and_burst_is_separate() -> None:
    clock = Clock()
    limiter = RateLimiter(2, burst=6, clock=clock)
    assert verdicts(limiter, "s", 7) == ["ok"] * 6 + ["refuse"]
    clock.now += 1.0
    assert verdicts(limiter, "s", 3)[:2] == ["ok", "ok"]


def test_memory_is_bounded_and_idle_sources_go_first() -> None:
    clock = Clock()
    limiter = RateLimiter(1, clock=clock, max_sources=100)
    verdicts(limiter, "flooder", 5)
    for i in range(1000):
        limiter.check(f"10.1.{i // 256}.{i % 256}", False)
        assert len(limiter) <= 100
    clock.now += 0.5
    verdicts(limiter, "flooder", 2)  # evicted above as the oldest: one more burst, then limited
    clock.now += 0.6  # the one-shot sources have refilled, the flooder has not
    for i in range(60):
        limiter.check(f"10.2.0.{i}", False)  # the table fills up: the idle ones are forgotten
    assert len(limiter) <= 100 and limiter.check("flooder", False) is not None


def test_one_log_line_per_source_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limiter = RateLimiter(1, clock=clock)
    with caplog.at_level(logging.WARNING, logger="resolver.ratelimit"):
        verdicts(limiter, "10.0.0.9", 500)
        assert len(caplog.records) == 1 and "10.0.0.9" in caplog.records[0].getMessage()
        clock.now += LOG_INTERVAL
        verdicts(limiter, "10.0.0.9", 500)
    assert len(caplog.records) == 2 and "limited since" in caplog.records[1].getMessage()


def test_limited_reply_is_refused_with_the_question() -> None:
    query = dns.message.make_query("web", "A", use_edns=0)
    reply = limited_reply(query.to_wire(), Limited.REFUSE, False)
    assert reply is not None
    parsed = dns.message.from_wire(reply)
    assert query.is_response(parsed) and parsed.rcode() == dns.rcode.REFUSED
    assert parsed.edns == 0 and not parsed.answer
    assert limited_reply(query.to_wire(), Limited.DROP, False) is None
    response = dns.message.make_response(query).to_wire()
    assert limited_reply(response, Limited.REFUSE, True) is None  # QR=1: never answered


def test_handler_hook_limits_one_source_and_answers_another() -> None:
    handler = Handler(TOPOLOGY.table(), Policy(), RateLimiter(2, clock=Clock()))
    wire = dns.message.make_query("web", "A").to_wire()
    outcomes = [handler.handle(wire, "127.0.0.2", False) for _ in range(4)]
    rcodes = [dns.message.from_wire(out).rcode() for out in outcomes if isinstance(out, bytes)]
    assert rcodes == [dns.rcode.NOERROR] * 2 + [dns.rcode.REFUSED] * 2  # four replies
    other = handler.handle(wire, "127.0.0.3", False)
    assert isinstance(other, bytes) and dns.message.from_wire(other).answer


def test_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["serve", "--no-upstream", "--rate-limit", "50"])
    assert config_from_args(args).rate_limit == 50 and Config().rate_limit == 0
    monkeypatch.setenv("SCOPEDNS_RATE_LIMIT", "7")
    monkeypatch.setenv("SCOPEDNS_RATE_LIMIT_BURST", "20")
    config = config_from_args(build_parser().parse_args(["serve", "--no-upstream"]))
    assert (config.rate_limit, config.rate_limit_burst) == (7, 20)
    with pytest.raises(SystemExit):  # refused by the flag's check (exit 2, one line)
        config_from_args(build_parser().parse_args(["serve", "--rate-limit", "-1"]))


def _udp_socket(source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((source, 0))
    sock.setblocking(False)
    return sock


async def _drain(sock: socket.socket) -> list[dns.message.Message]:
    """Replies until 1 s of silence."""
    loop, replies = asyncio.get_running_loop(), list[dns.message.Message]()
    while True:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 1.0)
        except TimeoutError:
            return replies
        replies.append(dns.message.from_wire(data))


async def test_loopback_flood_is_limited_while_another_source_is_answered(serve: Serve) -> None:
    """Rounds of 30 queries from a flooding source, each followed by one query from another
    source that must be answered (rounds keep the server's socket buffer from overflowing,
    which would drop packets before the limiter sees them)."""
    server = await serve(TOPOLOGY.table(), Config(rate_limit=20))
    target = ("127.0.0.1", port(server))
    loop = asyncio.get_running_loop()
    flood, calm = _udp_socket("127.0.0.2"), _udp_socket("127.0.0.3")
    wire = dns.message.make_query("web", "A").to_wire()
    try:
        for _ in range(10):
            for _ in range(30):
                flood.sendto(wire, target)  # uvloop has no sock_sendto; 30 never fill the buffer
            calm.sendto(wire, target)
            reply = dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(calm, 4096), 3))
            assert reply.rcode() == dns.rcode.NOERROR and reply.answer
        rcodes = [reply.rcode() for reply in await _drain(flood)]
        assert rcodes.count(dns.rcode.REFUSED) > 0
        assert rcodes.count(dns.rcode.NOERROR) < 150 and len(rcodes) < 300
    finally:
        flood.close()
        calm.close()
