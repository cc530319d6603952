# A fake upstream DNS server (UDP and TCP) for the tests: each name's first label may pick a
# behaviour (answer, NXDOMAIN, SERVFAIL, REFUSED, silence, TC, wrong ID, wrong question,
# garbage, an oversized reply, a reply from another port), else the server's mode does; every
# query it receives is recorded. In-process on loopback for the socket tests;
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
# What spoofed replies answer (TEST-NET-2): a client that sees it was fed a spoof.
SPOOF_ADDRESS = "198.51.100.66"
OVERSIZED_RECORDS = 100  # A records in an "oversized" reply: ~1.7 kB, past 512 and 1232


FAKE_SUFFIX = ".invalid."
MODES = ("answer", "nxdomain", "servfail", "refused", "silent", "tc", "wrongid", "invalid-only",
         "tc-udp", "wrongquestion", "garbage", "oversized", "othersource")
# Modes whose reply a careful client must drop; with `then_answer` the right reply follows.
SPOOFS = frozenset({"wrongid", "wrongquestion", "garbage", "othersource"})


def fake_reply(data: bytes, mode: str) -> bytes | None:
    """The reply to `data` in `mode`. "invalid-only": NXDOMAIN for every name except those
    under .invalid, whose A is FAKE_ADDRESS (other types: NOERROR, no answer). Spoofs
    (wrongid, wrongquestion, othersource) answer SPOOF_ADDRESS; "garbage" has the right ID
    and a QR header but no DNS after it; "oversized" ignores the client's size."""
    query = dns.message.from_wire(data)
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.RA
    question = query.question[0]
    if mode == "silent":
        return None
    if mode == "garbage":
        return data[:2] + b"\x81\x80\x00\x01" + b"\xff" * 24
    if mode in ("wrongid", "wrongquestion", "othersource"):
        return _spoof(query, mode)
    if mode == "oversized":
        hosts = [f"192.0.2.{host}" for host in range(1, OVERSIZED_RECORDS + 1)]
        reply.answer.append(dns.rrset.from_text_list(question.name, 30, "IN", "A", hosts))
        return reply.to_wire(max_size=65535, want_shuffle=False)  # 192.0.2.1 first, in order
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
    return reply.to_wire()


def _spoof(query: dns.message.Message, mode: str) -> bytes:
    """An answer of SPOOF_ADDRESS with a wrong ID, for another question, or (othersource)
    perfect but meant to be sent from another port."""
    question = query.question[0]
    if mode == "wrongquestion":
        query = dns.message.make_query("not-the-question" + FAKE_SUFFIX, question.rdtype,
                                       id=query.id)
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.RA
    reply.answer.append(
        dns.rrset.from_text(reply.question[0].name, 30, "IN", "A", SPOOF_ADDRESS))
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
    # After a spoof (SPOOFS), also send the right answer, as the real server would.
    then_answer: bool = False
    # The second UDP socket "othersource" spoofs are sent from (another port).
    elsewhere: asyncio.DatagramTransport | None = field(default=None, repr=False)
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
        return fake_reply(data, self.mode_for(name, transport))

    def mode_for(self, name: str, transport: str) -> str:
        first = name.split(".")[0].lower()
        mode = first if first in MODES else self.mode
        if mode == "tc-udp":  # as a real server: truncated over UDP, whole over TCP
            return "tc" if transport == "udp" else "answer"
        return mode

    def replies(self, data: bytes, transport: str, peer: str = "") -> list[tuple[bytes, bool]]:
        """What goes back for `data`, in order: (wire, sent from another port). An
        "othersource" spoof over TCP goes nowhere: a connection has one peer."""
        reply = self.behaviour(data, transport, peer)
        if reply is None:
            return []
        mode = self.mode_for(dns.message.from_wire(data).question[0].name.to_text(), transport)
        sent = [] if mode == "othersource" and transport == "tcp" else [
            (reply, mode == "othersource")]
        if self.then_answer and mode in SPOOFS:
            answer = fake_reply(data, "answer")
            assert answer is not None
            sent.append((answer, False))
        return sent

    async def start(self) -> FakeUpstream:
        """Listen on UDP and TCP on one port. Port 0: the UDP socket picks it; if that number
        is taken for TCP (by some client's ephemeral port), pick again."""
        loop = asyncio.get_running_loop()
        for attempt in range(1 if self.port else 10, 0, -1):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(self.host, self.port))
            port = udp.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(self._serve_tcp, self.host, port,
                                                 reuse_address=True)
            except OSError:
                udp.close()
                if attempt == 1:
                    raise
                continue
            self.port = port
            break
        elsewhere, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(self.host, 0))
        self.elsewhere = elsewhere
        self._closers += [udp.close, tcp.close, elsewhere.close]
        return self

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(length)
                for reply, _ in self.replies(data, "tcp", f"{peer[0]}:{peer[1]}"):
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
        if self._transport is None:
            return
        for reply, from_elsewhere in self._owner.replies(data, "udp", f"{addr[0]}:{addr[1]}"):
            sender = self._owner.elsewhere if from_elsewhere else self._transport
            if sender is not None:
                sender.sendto(reply, addr)
