# An in-process fake upstream DNS server on loopback for the socket tests: each name's first
# label picks a behaviour (answer, NXDOMAIN, SERVFAIL, REFUSED, silence, TC, wrong ID), and
# every query it receives is recorded. Nothing here ever leaves 127.0.0.1.
from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from typing import Any, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rrset

FAKE_ADDRESS = "192.0.2.53"  # TEST-NET-1: documentation space, never routed


def fake_reply(data: bytes, mode: str) -> bytes | None:
    query = dns.message.from_wire(data)
    reply = dns.message.make_response(query)
    if mode == "silent":
        return None
    if mode in ("nxdomain", "servfail", "refused"):
        reply.set_rcode(dns.rcode.from_text(mode.upper()))
    elif mode == "tc":
        reply.flags |= dns.flags.TC
    else:
        name = query.question[0].name
        reply.answer.append(dns.rrset.from_text(name, 30, "IN", "A", FAKE_ADDRESS))
    wire = reply.to_wire()
    if mode == "wrongid":
        wire = struct.pack("!H", (reply.id + 1) % 65536) + wire[2:]
    return wire


@dataclass
class FakeUpstream:
    """`mode` is the default behaviour; a name whose first label is a mode overrides it."""

    mode: str = "answer"
    seen: list[tuple[str, str]] = field(default_factory=list)  # (transport, qname)
    port: int = 0
    _closers: list[Any] = field(default_factory=list)

    def behaviour(self, data: bytes, transport: str) -> bytes | None:
        query = dns.message.from_wire(data)
        name = query.question[0].name.to_text()
        self.seen.append((transport, name))
        first = name.split(".")[0].lower()
        mode = first if first in ("nxdomain", "servfail", "refused", "silent", "tc",
                                  "wrongid") else self.mode
        return fake_reply(data, mode)

    async def start(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=("127.0.0.1", self.port))
        self.port = udp.get_extra_info("sockname")[1]
        tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", self.port)
        self._closers += [udp.close, tcp.close]
        return self

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = self.behaviour(await reader.readexactly(length), "tcp")
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        for close in self._closers:
            close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: FakeUpstream) -> None:
        self._owner = owner
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's and uvloop's UDP transports do not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        reply = self._owner.behaviour(data, "udp")
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)
