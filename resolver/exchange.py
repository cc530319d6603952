# One upstream exchange over a socket of its own (docs/forwarding.md): what an upstream is, how
# the socket of a try is made (plainly, or inside a container's namespace for takeover), and the
# awaitable UDP and TCP exchanges that return the first reply matching source, ID and question.
# The hot UDP path of resolver/forward.py (UdpForward) does the same without awaiting.
from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from resolver.upstream_reply import matches
from resolver.wire import Query


class Upstream(NamedTuple):
    """An upstream server: an address (never a name, which would need resolving, perhaps
    through us) and a port."""

    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"



# Makes the socket of one upstream try (family, type). Takeover makes it inside a container's
# namespace, to reach Docker's resolver there (docs/takeover.md).
SocketOpener = Callable[[int, int], Awaitable[socket.socket]]


async def plain_socket(family: int, kind: int) -> socket.socket:
    return socket.socket(family, kind)


async def exchange_udp(open_socket: SocketOpener, upstream: Upstream, data: bytes, query: Query,
                        upstream_id: int) -> bytes:
    # A connected socket on a fresh ephemeral port: the kernel drops datagrams from any other
    # address or port, and a closed upstream port (ICMP) fails the receive. A bare socket, not
    # a transport: no address resolution and no protocol objects per try (upstreams are IPs).
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in upstream.host else socket.AF_INET
    with await open_socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((upstream.host, upstream.port))
        sock.send(data)
        while True:
            reply = await loop.sock_recv(sock, 65535)
            if matches(reply, query, upstream_id):
                return reply


async def exchange_tcp(open_socket: SocketOpener, upstream: Upstream, data: bytes, query: Query,
                        upstream_id: int) -> bytes:
    family = socket.AF_INET6 if ":" in upstream.host else socket.AF_INET
    sock = await open_socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (upstream.host, upstream.port))
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        writer.write(struct.pack("!H", len(data)) + data)
        await writer.drain()
        while True:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
            reply = await reader.readexactly(length)
            if matches(reply, query, upstream_id):
                return reply
    finally:
        writer.close()
