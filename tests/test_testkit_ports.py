# Waiting for a DNS server started as a separate process (testkit/ports.py): a query sent before
# it has bound its port is lost with no error to the asker, so a test that asks once right after
# starting it fails when the start is slow (the engine-restart test did, on a loaded machine).
from __future__ import annotations

import asyncio
import socket
import threading

import dns.asyncquery
import dns.exception
import dns.message
import pytest

from testkit.ports import free_port, until_answering


def serve_one_later(port: int, bound: threading.Event, go: threading.Event) -> None:
    """Bind `port` once `go` is set, answer one query, and stop."""
    go.wait(10)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.settimeout(10)
        bound.set()
        data, client = sock.recvfrom(512)
        sock.sendto(dns.message.make_response(dns.message.from_wire(data)).to_wire(), client)


async def test_a_query_before_the_bind_is_lost_and_until_answering_waits() -> None:
    port = free_port()
    bound, go = threading.Event(), threading.Event()
    server = threading.Thread(target=serve_one_later, args=(port, bound, go), daemon=True)
    server.start()
    try:
        # Lost (here: no ICMP error reaches the asker) or refused: either way, no answer.
        with pytest.raises((dns.exception.Timeout, ConnectionRefusedError)):
            await dns.asyncquery.udp(dns.message.make_query("early.invalid", "A"),
                                     "127.0.0.1", port=port, timeout=0.3)
        go.set()
        await until_answering(port, timeout=10)
        assert bound.is_set()
    finally:
        go.set()
        await asyncio.to_thread(server.join, 10)


async def test_until_answering_gives_up_when_the_process_is_gone() -> None:
    with pytest.raises(RuntimeError, match="exited"):
        await until_answering(free_port(), timeout=10, alive=lambda: False)
