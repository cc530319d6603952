# Reading UDP in batches on one thread (--udp-io batch, docs/performance.md) as a client sees
# it, beside the server tests that already run on both --udp-io modes (the `serve` fixture):
# replies too big for the batch's send buffer and replies cut to the client's size, one thread
# for hundreds of listeners, a takeover listener answering as its container, the next query
# after a table change, and no thread or socket left after close.
from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import pytest

from resolver import mmsg
from resolver.answer import Policy
from resolver.config import Config
from resolver.handler import Handler
from resolver.server import Server
from resolver.takeover import Client
from resolver.transport import Resolution
from resolver.udp_batch import BatchReceiver
from testkit.topology import Topology, attach, container, network
from tests.servers import Serve, addresses, port

NET = network("batchnet", "172.61.0.0/16")
# 300 holders of "many": an EDNS client asking for 64 kB gets ~5 kB, past the batch's
# per-reply buffer (mmsg.SEND_SLOT); a client without EDNS gets what fits in 512 bytes.
HOLDERS = 300
MANY = Topology([NET], [container(f"m{n}", attach(NET, n + 2, "many"))
                        for n in range(HOLDERS)])
LOOPNET = network("batchloop", "127.65.0.0/24")
LINKED = Topology([LOOPNET], [container("linked", attach(LOOPNET, 2, links={"me": "linked"}))])


def thread_count() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "scopedns-udp")


async def ask(where: int, name: str, payload: int | None = None) -> dns.message.Message:
    query = dns.message.make_query(name, "A", use_edns=payload is not None,
                                   payload=payload or 512)
    return await dns.asyncquery.udp(query, "127.0.0.1", port=where, timeout=3,
                                    ignore_trailing=True)


async def test_replies_fit_the_clients_size_whatever_their_length(serve: Serve) -> None:
    server = await serve(MANY.table(), Config(alias_order="ordered"))
    whole = await ask(port(server), "many", payload=65000)
    assert len(whole.to_wire()) > mmsg.SEND_SLOT
    assert len(addresses(whole)) == HOLDERS and not whole.flags & dns.flags.TC
    cut = await ask(port(server), "many")
    assert cut.flags & dns.flags.TC and len(cut.to_wire()) <= 512


async def test_the_next_query_after_a_table_change_sees_the_change(serve: Serve) -> None:
    table = MANY.table()
    server = await serve(table)
    assert (await ask(port(server), "m7")).rcode() == dns.rcode.NOERROR
    assert (await ask(port(server), "m7")).rcode() == dns.rcode.NOERROR  # a kept reply now
    table.remove_container(MANY.containers[7].id)
    assert (await ask(port(server), "m7")).rcode() == dns.rcode.NXDOMAIN


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


async def test_one_thread_reads_hundreds_of_listeners() -> None:
    """Takeover's shape: many listeners, one thread for all of them."""
    resolution = Resolution(Handler(MANY.table(), Policy()), None)
    receiver = BatchReceiver()
    before = thread_count()
    sockets = [bound_socket() for _ in range(400)]
    try:
        closers = [receiver.add(sock, resolution) for sock in sockets]
        ports = [sock.getsockname()[1] for sock in sockets]
        replies = await asyncio.gather(*(ask(p, f"m{n}") for n, p in enumerate(ports[::40])))
        assert [addresses(r) for r in replies] == [[f"172.61.0.{n + 2}"]
                                                   for n in range(len(replies))]
        assert thread_count() == before + 1
        closers[0]()
        assert sockets[0].fileno() == -1
    finally:
        receiver.close()
    assert thread_count() == before
    assert all(sock.fileno() == -1 for sock in sockets)


async def test_a_takeover_listener_answers_as_its_container() -> None:
    """Whoever sends the packet, a takeover listener asks as its container (its view, its
    link aliases); names that are not local are forwarded, and the reply comes from the loop
    (here: no forwarder, so SERVFAIL, never silence)."""
    resolution = Resolution(Handler(LINKED.table(), Policy(forwarding=True)), None)
    receiver = BatchReceiver()
    plain, taken = bound_socket(), bound_socket()
    try:
        receiver.add(plain, resolution)
        close_taken: Callable[[], None] = receiver.add(taken, resolution, Client("127.65.0.2"))
        plain_port, taken_port = plain.getsockname()[1], taken.getsockname()[1]
        assert addresses(await ask(taken_port, "me")) == ["127.65.0.2"]
        # The host view (127.0.0.1 on a plain listener) has no link aliases: forwarded.
        assert (await ask(plain_port, "me")).rcode() == dns.rcode.SERVFAIL
        assert (await ask(taken_port, "x.invalid")).rcode() == dns.rcode.SERVFAIL
        close_taken()
        with pytest.raises(dns.exception.Timeout):
            await dns.asyncquery.udp(dns.message.make_query("me", "A"), "127.0.0.1",
                                     port=taken_port, timeout=0.3)
    finally:
        receiver.close()


async def test_closing_the_server_leaves_no_thread_and_frees_the_port() -> None:
    before = thread_count()
    server = Server(Config(listen=(("127.0.0.1", 0),), udp_io="batch"), MANY.table())
    await server.start()
    assert thread_count() == before + 1
    assert addresses(await ask(port(server), "m0")) == ["172.61.0.2"]
    await server.close()
    assert thread_count() == before
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port(server)))


@pytest.mark.parametrize(("raw", "expected"), [
    (int.from_bytes(b"\x02\x00\x00\x35\x7f\x00\x00\x01", "little"),
     ("127.0.0.1", ("127.0.0.1", 53))),
    (b"\x0a\x00\x14\xe9" + b"\x00" * 4 + socket.inet_pton(socket.AF_INET6, "fd00::2")
     + b"\x03\x00\x00\x00", ("fd00::2", ("fd00::2", 5353, 0, 3))),
])
def test_a_senders_address_reads_as_recvfrom_gives_it(raw: int | bytes,
                                                      expected: tuple[object, ...]) -> None:
    assert mmsg.sender_address(raw) == expected


def test_replies_queued_for_a_batch_that_failed_are_never_sent_later() -> None:
    """A batch that stopped half-way (an unexpected error) leaves no reply behind for the next
    socket's batch to send to the wrong client."""
    batch = mmsg.Batch()
    first, second = bound_socket(), bound_socket()
    with first, second, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(3)
        client.sendto(b"one", first.getsockname())
        assert batch.receive(first.fileno()) == 1
        batch.reply(0, b"stale")  # and then nothing: the batch failed
        client.sendto(b"two", second.getsockname())
        assert batch.receive(second.fileno()) == 1
        assert batch.received()[0][0] == b"two"
        batch.reply(0, b"fresh")
        assert batch.send(second.fileno()) == 0
        assert client.recvfrom(64) == (b"fresh", second.getsockname())
