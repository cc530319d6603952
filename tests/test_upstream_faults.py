# Upstream faults (docs/forwarding.md) against a real loopback server and fake upstreams it drives,
# on asyncio's loop and on uvloop, whose UDP sockets are its own (the `serve` fixture runs each
# server test on both; a reply from another port must be filtered by the connected socket):
# what the client gets when an upstream is silent, fails, lies, spoofs, truncates or oversizes,
# over UDP and TCP; failover and SERVFAIL within the budget; --max-forwards; no forwarding for
# all-internal clients; and an upstream that is scopedns itself refused at start-up.
from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest

from resolver import upstream_reply
from resolver.cli import main
from resolver.config import parse_host_port
from resolver.exchange import Upstream
from resolver.loopcheck import forwards_to_itself
from resolver.server import Server
from resolver.transport import LogEvery
from resolver.wire import Query, parse_query
from testkit.ports import free_port
from testkit.topology import Topology, attach, container, network
from tests.conftest import Fakes
from tests.fakes import FAKE_ADDRESS, OVERSIZED_RECORDS, FakeUpstream, fake_reply
from tests.servers import Serve, addresses, loopback_config, port

# Client networks inside 127.0.0.0/8, so a test can send from a container's own address.
INTERNAL = network("backplane", "127.61.0.0/24", internal=True)
OUTSIDE = network("frontnet", "127.62.0.0/24")
TOPOLOGY = Topology([INTERNAL, OUTSIDE], [
    container("web", attach(OUTSIDE, 2, "app")),
    container("isolated", attach(INTERNAL, 2)),
    container("bridged", attach(INTERNAL, 3), attach(OUTSIDE, 3)),
])
ISOLATED, BRIDGED = "127.61.0.2", "127.61.0.3"  # each one's address on the internal network

# Faults after which the next upstream must be asked. "othersource" is UDP only: a TCP reply
# cannot come from another address. "closed": nothing listens on the port at all.
FAILOVER_FAULTS = ["silent", "servfail", "refused", "wrongid", "wrongquestion", "garbage",
                   "othersource", "closed"]
SPOOFS = ["wrongid", "wrongquestion", "garbage", "othersource"]
TRANSPORTS = ["udp", "tcp"]
MARGIN = 1.5  # seconds past the budget a loaded 2-core machine may need to deliver SERVFAIL


def over_both(faults: list[str]) -> list[tuple[str, str]]:
    """(fault, transport) pairs; "othersource" only over UDP."""
    return [(fault, transport) for fault in faults for transport in TRANSPORTS
            if not (fault == "othersource" and transport == "tcp")]


async def start(serve: Serve, *upstreams: FakeUpstream, timeout: float = 0.3,
                budget: float = 2.0, **fields: Any) -> Server:
    """A server over TOPOLOGY forwarding to `upstreams` in order."""
    return await serve(TOPOLOGY.table(), loopback_config(
        *upstreams, upstream_timeout=timeout, upstream_budget=budget, **fields))


async def ask(server: Server, name: str, transport: str = "udp", *, source: str = "127.0.0.1",
              payload: int | None = None) -> dns.message.Message:
    query = dns.message.make_query(name, "A", use_edns=payload is not None,
                                   payload=payload or 1232)
    send = dns.asyncquery.tcp if transport == "tcp" else dns.asyncquery.udp
    return await send(query, "127.0.0.1", port=port(server), timeout=5, source=source)


# ----- one fault, then a good upstream ---------------------------------------------------------

@pytest.mark.parametrize(("fault", "transport"), over_both(FAILOVER_FAULTS))
async def test_faulty_first_upstream_fails_over_to_the_next(serve: Serve, fakes: Fakes,
                                                            fault: str, transport: str) -> None:
    bad, good = await fakes(fault), await fakes()
    server = await start(serve, bad, good)
    reply = await ask(server, "failover.invalid", transport)
    assert reply.rcode() == dns.rcode.NOERROR and addresses(reply) == [FAKE_ADDRESS]
    assert len(bad.seen) == (0 if fault == "closed" else 1)
    assert good.seen == [(transport, "failover.invalid.")]


@pytest.mark.parametrize(("fault", "transport"), over_both(SPOOFS))
async def test_spoofed_reply_is_dropped_and_the_right_one_accepted(
        serve: Serve, fakes: Fakes, fault: str, transport: str) -> None:
    liar = await fakes(fault, then_answer=True)  # the spoof first, then the real reply
    server = await start(serve, liar)
    reply = await ask(server, "asked.invalid", transport)
    assert addresses(reply) == [FAKE_ADDRESS]  # the spoof answers SPOOF_ADDRESS
    assert len(liar.seen) == 1


async def test_every_udp_try_has_its_own_id_and_source_port(
        serve: Serve, fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh random ID and a fresh socket (so port) per try, repeats of one query and
    concurrent queries alike (docs/forwarding.md, "One try")."""
    upstream = await fakes()
    tries: list[tuple[bytes, str]] = []  # (ID, source address:port) of each datagram
    behaviour = upstream.behaviour

    def recorded(data: bytes, transport: str, peer: str = "") -> bytes | None:
        tries.append((data[:2], peer))
        return behaviour(data, transport, peer)

    monkeypatch.setattr(upstream, "behaviour", recorded)
    server = await start(serve, upstream, cache_size=0)
    for _ in range(12):
        assert addresses(await ask(server, "again.invalid")) == [FAKE_ADDRESS]
    replies = await asyncio.gather(*(ask(server, f"n{i}.invalid") for i in range(12)))
    assert [addresses(r) for r in replies] == [[FAKE_ADDRESS]] * 12
    assert len(tries) == 24
    # Random 16-bit IDs and ephemeral ports may repeat now and then, never mostly.
    assert len({ident for ident, _ in tries}) >= 20
    assert len({peer for _, peer in tries}) >= 20


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_nxdomain_is_relayed_at_once_without_failover(serve: Serve, fakes: Fakes,
                                                           transport: str) -> None:
    first, second = await fakes("nxdomain"), await fakes()
    server = await start(serve, first, second)
    query = dns.message.make_query("gone.invalid", "A")
    send = dns.asyncquery.tcp if transport == "tcp" else dns.asyncquery.udp
    reply = await send(query, "127.0.0.1", port=port(server), timeout=5)
    assert reply.id == query.id and reply.rcode() == dns.rcode.NXDOMAIN
    assert len(first.seen) == 1 and second.seen == []


async def test_truncated_reply_is_relayed_and_the_tcp_retry_works(serve: Serve,
                                                                 fakes: Fakes) -> None:
    upstream = await fakes("tc-udp")  # TC over UDP, the whole answer over TCP
    server = await start(serve, upstream)
    over_udp = await ask(server, "big.invalid")
    assert over_udp.flags & dns.flags.TC and addresses(over_udp) == []
    query = dns.message.make_query("big.invalid", "A")
    reply, used_tcp = await dns.asyncquery.udp_with_fallback(
        query, "127.0.0.1", port=port(server), timeout=5)
    assert used_tcp and addresses(reply) == [FAKE_ADDRESS]
    assert [transport for transport, _ in upstream.seen] == ["udp", "udp", "tcp"]


@pytest.mark.parametrize("payload", [None, 1232, 4096])
async def test_oversized_udp_reply_is_cut_to_the_clients_size(serve: Serve, fakes: Fakes,
                                                             payload: int | None) -> None:
    """Decision: whole answer records that fit the client's size (512 without EDNS), TC set,
    as for local answers; the TCP retry gets everything. Docker v24+ relays it as is."""
    upstream = await fakes("oversized")
    server = await start(serve, upstream)
    reply = await ask(server, "many.invalid", payload=payload)
    limit = payload or 512
    assert len(reply.to_wire()) <= limit
    sent = [f"192.0.2.{host}" for host in range(1, OVERSIZED_RECORDS + 1)]
    assert addresses(await ask(server, "many.invalid", "tcp")) == sent  # TCP: whole
    got = addresses(reply)
    if payload == 4096:  # it fits: relayed whole, no TC
        assert got == sent and not reply.flags & dns.flags.TC
    else:
        assert reply.flags & dns.flags.TC and 0 < len(got) < len(sent)
        assert got == sent[: len(got)]  # whole records, in order, none altered
        assert (reply.edns >= 0) == (payload is not None)


def parsed(name: str, rdtype: str, payload: int | None = None) -> tuple[Query, bytes]:
    wire = dns.message.make_query(name, rdtype, use_edns=payload is not None,
                                  payload=payload or 1232).to_wire()
    query = parse_query(wire)
    assert isinstance(query, Query)
    return query, wire


def test_reply_check_folds_case_in_the_name_only() -> None:
    """0x20-randomised names match; a type that differs only in bit 0x20 does not (HTTPS is
    65, "A" in ASCII; 97 is "a": a bytes.lower() over the whole question confused them)."""
    query, wire = parsed("Mixed.Case.invalid", "HTTPS")
    echoed = bytearray(dns.message.make_response(dns.message.from_wire(wire)).to_wire())
    assert upstream_reply.matches(bytes(echoed), query, query.id)
    name_end = 12 + len(query.question) - 4
    echoed[12:name_end] = echoed[12:name_end].swapcase()
    assert upstream_reply.matches(bytes(echoed), query, query.id)
    echoed[name_end + 1] = 97  # qtype 65 -> 97
    assert not upstream_reply.matches(bytes(echoed), query, query.id)
    assert not upstream_reply.matches(bytes(echoed), query, (query.id + 1) % 65536)


def test_cut_reply_with_a_broken_answer_section_keeps_no_records() -> None:
    query, wire = parsed("many.invalid", "A")
    reply = fake_reply(wire, "oversized")
    assert reply is not None
    claims_more = reply[:6] + (OVERSIZED_RECORDS + 50).to_bytes(2, "big") + reply[8:]
    cut = dns.message.from_wire(upstream_reply.fit_udp(claims_more, query))
    assert cut.flags & dns.flags.TC and len(addresses(cut)) == 30  # whole records that fit
    start = 12 + len(query.question)
    overrun = (reply[:6] + (1).to_bytes(2, "big") + reply[8:start + 10]  # name, type ... TTL
               + b"\xff\xff" + bytes(600))  # rdata "65535 bytes long": runs off the end
    cut = dns.message.from_wire(upstream_reply.fit_udp(overrun, query))
    assert cut.flags & dns.flags.TC and cut.answer == []


# ----- every upstream faulty -------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("faults", [
    ("silent", "servfail", "refused"),
    ("wrongid", "wrongquestion", "garbage"),
    ("closed", "othersource", "silent"),
])
async def test_all_upstreams_faulty_gives_servfail_within_the_budget(
        serve: Serve, fakes: Fakes, faults: tuple[str, ...], transport: str) -> None:
    upstreams = [await fakes(fault) for fault in faults]
    budget = 2.0
    server = await start(serve, *upstreams, budget=budget)
    began = time.monotonic()
    reply = await ask(server, "nowhere.invalid", transport)
    elapsed = time.monotonic() - began
    assert reply.rcode() == dns.rcode.SERVFAIL and reply.answer == []
    assert elapsed < budget + MARGIN  # a correctness bound: never silence, never late
    for fault, upstream in zip(faults, upstreams, strict=True):
        assert len(upstream.seen) == (0 if fault == "closed" else 1), fault


async def test_the_total_budget_cuts_the_tries_short(serve: Serve, fakes: Fakes) -> None:
    """Three silent upstreams at 0.8 s a try would take 2.4 s; the 1 s budget wins."""
    dead = [await fakes("silent") for _ in range(3)]
    budget = 1.0
    server = await start(serve, *dead, timeout=0.8, budget=budget)
    began = time.monotonic()
    reply = await ask(server, "slow.invalid")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert time.monotonic() - began < budget + 0.8  # below 2.4: the budget cut it
    assert len(dead[0].seen) == 1 and len(dead[1].seen) == 1


# ----- --max-forwards ---------------------------------------------------------------------------

async def test_forward_cap_refuses_the_extra_queries_at_once(serve: Serve,
                                                             fakes: Fakes) -> None:
    cap, extra = 3, 2
    silent = await fakes("silent")  # "answer.invalid" is still answered: the label picks
    server = await start(serve, silent, timeout=1.5, budget=1.5, max_forwards=cap)
    # Three clients (each may hold a quarter of the cap, at least one) fill the cap.
    pending = [asyncio.ensure_future(ask(server, f"hang{i}.invalid", source=f"127.0.0.{i + 1}"))
               for i in range(cap)]
    while len(silent.seen) < cap:
        await asyncio.sleep(0.01)
    refused = [await ask(server, "answer.invalid", transport)
               for transport in ["udp", "tcp"][:extra]]
    local = await ask(server, "web")
    assert not any(future.done() for future in pending)  # refused while the cap was full
    assert [r.rcode() for r in refused] == [dns.rcode.REFUSED] * extra
    assert addresses(local) == ["127.62.0.2"]
    assert len(silent.seen) == cap  # the refused ones never went upstream
    hung = await asyncio.gather(*pending)
    assert [r.rcode() for r in hung] == [dns.rcode.SERVFAIL] * cap
    assert addresses(await ask(server, "answer.invalid")) == [FAKE_ADDRESS]  # cap freed


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_one_client_flooding_forwards_leaves_others_answered(
        serve: Serve, fakes: Fakes, transport: str) -> None:
    """One client holds at most a quarter of --max-forwards: past that it gets REFUSED at
    once, while another client's forwards still go upstream and are answered."""
    silent = await fakes("silent")  # "answer.invalid" is answered, "hang*" never
    server = await start(serve, silent, timeout=1.5, budget=1.5, max_forwards=8)
    flood = [asyncio.ensure_future(ask(server, f"hang{i}.invalid", transport,
                                       source="127.0.0.7")) for i in range(2)]
    while len(silent.seen) < 2:
        await asyncio.sleep(0.01)
    refused = await ask(server, "hang-more.invalid", transport, source="127.0.0.7")
    other = await ask(server, "answer.invalid", transport, source="127.0.0.8")
    assert refused.rcode() == dns.rcode.REFUSED
    assert addresses(other) == [FAKE_ADDRESS]
    assert [r.rcode() for r in await asyncio.gather(*flood)] == [dns.rcode.SERVFAIL] * 2
    assert addresses(await ask(server, "answer.invalid", transport, source="127.0.0.7")) \
        == [FAKE_ADDRESS]  # its share is back once its forwards ended


# ----- internal networks ------------------------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_all_internal_client_is_never_forwarded_for(serve: Serve, fakes: Fakes,
                                                          transport: str) -> None:
    upstream = await fakes()
    server = await start(serve, upstream)
    reply = await ask(server, "exfiltrate.invalid", transport, source=ISOLATED)
    assert reply.rcode() == dns.rcode.SERVFAIL and upstream.seen == []
    assert addresses(await ask(server, "bridged", transport, source=ISOLATED)) == [BRIDGED]
    forwarded = await ask(server, "outside.invalid", transport, source=BRIDGED)
    assert addresses(forwarded) == [FAKE_ADDRESS]
    assert upstream.seen == [(transport, "outside.invalid.")]


# ----- an upstream that is scopedns itself -------------------------------------------------------

def is_loop(listen: str, upstream: str) -> bool:
    """The start-up check as the server runs it once `listen` is bound."""
    return forwards_to_itself(Upstream(*parse_host_port(upstream, 53)),
                              [parse_host_port(listen, 53)])


def an_interface_address() -> str | None:
    """This host's address on the route to TEST-NET-1 (a UDP connect sends nothing)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 53))
        address: str = probe.getsockname()[0]
        return None if address.startswith("127.") else address
    except OSError:
        return None
    finally:
        probe.close()


@pytest.mark.parametrize(("listen", "upstream"), [
    ("127.0.0.1:5353", "127.0.0.1:5353"),
    ("0.0.0.0:5353", "127.0.0.1:5353"),
    ("0.0.0.0:5353", "127.0.0.2:5353"),  # all of 127/8 is this host
    ("0.0.0.0:5353", "0.0.0.0:5353"),
    ("[::]:5353", "127.0.0.1:5353"),  # a :: UDP socket takes IPv4 too
    ("[::]:5353", "[::ffff:127.0.0.1]:5353"),
    ("127.0.0.1:5353", "[::ffff:127.0.0.1]:5353"),
])
def test_upstream_that_is_this_server_is_refused(listen: str, upstream: str) -> None:
    assert is_loop(listen, upstream)


def test_upstream_on_a_local_interface_behind_a_wildcard_is_refused() -> None:
    address = an_interface_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this host")
    assert is_loop("0.0.0.0:53", address)
    assert not is_loop("127.0.0.1:53", address)


@pytest.mark.parametrize(("listen", "upstream"), [
    ("0.0.0.0:5353", "127.0.0.1:5300"),  # another port
    ("0.0.0.0:5353", "192.0.2.1:5353"),  # not an address of this host
    ("127.0.0.1:5353", "127.0.0.2:5353"),  # a specific listen: only that address is us
])
def test_other_upstreams_are_accepted(listen: str, upstream: str) -> None:
    assert not is_loop(listen, upstream)


def test_main_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port("0.0.0.0")  # the test listens on every address
    code = main(["serve", "--listen", f"0.0.0.0:{port}", "--upstream", f"127.0.0.9:{port}",
                 "--docker", "unix:///nonexistent/docker.sock"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert f"upstream 127.0.0.9:{port} is this server itself" in lines[0]


def test_a_flood_of_the_same_warning_is_one_line_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    throttled = LogEvery(logging.getLogger("resolver.test"), interval=0.2)
    with caplog.at_level(logging.WARNING, logger="resolver.test"):
        for number in range(1000):
            throttled.warning("refused %d", number)
        time.sleep(0.3)
        throttled.warning("refused %d", 1000)
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0", "refused 1000 (and 999 more like it in the last 0.2s)"]
