# A loopback port free for both UDP and TCP, for a server started as a separate process (a
# server in this process binds port 0 instead), and waiting until such a server answers.
from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import dns.asyncquery
import dns.exception
import dns.message


def free_port(address: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `address` now (0.0.0.0: on every address)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((address, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((address, port))
                except OSError:
                    continue
                return port


async def until_answering(port: int, timeout: float, address: str = "127.0.0.1",
                          alive: Callable[[], bool] = lambda: True) -> None:
    """Wait until a DNS server started as a separate process answers UDP on `address`:`port`
    (any reply will do). A query sent before the server has bound its port is lost, with no
    error to the asker (no ICMP reaches a loopback client here), so asking once right after
    starting it fails whenever the start is slow. Raises TimeoutError past `timeout`, or
    RuntimeError as soon as `alive()` says the process is gone."""
    query = dns.message.make_query("ready.invalid", "A")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server for port {port} exited before it answered")
        try:
            await dns.asyncquery.udp(query, address, port=port, timeout=0.25)
            return
        except (dns.exception.Timeout, OSError):
            await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing answers DNS on {address}:{port} after {timeout:.0f}s")
