# A fake upstream DNS server (UDP and TCP) for the tests: each name's first label may pick a
# behaviour (answer, NXDOMAIN, SERVFAIL, REFUSED, silence, TC, wrong ID), else the server's
# mode does; every query it receives is recorded. In-process on loopback for the socket tests;
# tests/integration/fake_upstream.py runs it as a process inside test network namespaces.
from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

FAKE_ADDRESS = "192.0.2.53"  # TEST-NET-1: documentation space, never routed


FAKE_SUFFIX = ".invalid."
MODES = ("answer", "nxdomain", "servfail", "refused", "silent", "tc", "wrongid", "invalid-only")


def fake_reply(data: bytes, mode: str) -> bytes | None:
    """The reply to `data` in `mode`. "invalid-only": NXDOMAIN for every name except those
    under .invalid, whose A is FAKE_ADDRESS (other types: NOERROR, no answer)."""
    query = dns.message.from_wire(data)
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.RA
    question = query.question[0]
    if mode == "silent":
        return None
    if mode == "invalid-only":
        if not question.name.to_text().lower().endswith(FAKE_SUFFIX):
            mode = "nxdomain"
        elif question.rdtype != dns.rdatatype.A:
            return reply.to_wire()
    if mode in ("nxdomain", "servfail", "refused"):
        reply.set_rcode(dns.rcode.from_text(mode.upper()))
    elif mode == "tc":
        reply.flags |= dns.flags.TC
    else:
        reply.answer.append(dns.rrset.from_text(question.name, 30, "IN", "A", FAKE_ADDRESS))
    wire = reply.to_wire()
    if mode == "wrongid":
        wire = struct.pack("!H", (reply.id + 1) % 65536) + wire[2:]
    return wire


@dataclass
class FakeUpstream:
    """`mode` is the default behaviour; a name whose first label is a mode overrides it."""

    mode: str = "answer"
    host: str = "127.0.0.1"
    port: int = 0
    # Called with (qname, qtype, transport, peer) for every query that parses.
    on_query: Callable[[str, str, str, str], None] | None = None
    seen: list[tuple[str, str]] = field(default_factory=list)  # (transport, qname)
    _closers: list[Any] = field(default_factory=list)

    def behaviour(self, data: bytes, transport: str, peer: str = "") -> bytes | None:
        try:
            query = dns.message.from_wire(data)
            question = query.question[0]
        except Exception:  # garbage: dropped, as a real server would
            return None
        name = question.name.to_text()
        self.seen.append((transport, name))
        if self.on_query is not None:
            self.on_query(name, dns.rdatatype.to_text(question.rdtype), transport, peer)
        first = name.split(".")[0].lower()
        return fake_reply(data, first if first in MODES else self.mode)

    async def start(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self), local_addr=(self.host, self.port))
        self.port = udp.get_extra_info("sockname")[1]
        tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port,
                                         reuse_address=True)
        self._closers += [udp.close, tcp.close]
        return self

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(length)
                reply = self.behaviour(data, "tcp", f"{peer[0]}:{peer[1]}")
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
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
        reply = self._owner.behaviour(data, "udp", f"{addr[0]}:{addr[1]}")
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)
