"""A fake upstream DNS server for the integration tests (UDP and TCP, dnspython + asyncio).

It answers NXDOMAIN for every name, except names under `.invalid`, which get a fixed
`A 192.0.2.53` (other types: NOERROR, no answer). Every query it receives is appended to a
JSON-lines log (qname, qtype, transport, peer) so a test can tell that a name was forwarded.
Nothing it answers ever leaves the host: the tests point both scopedns and Docker's embedded DNS
at instances of this server.

Run: `python fake_upstream.py --listen 127.0.0.1:5300 [--listen ...] --log FILE`.
It prints `READY` on stdout once every socket is bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
from typing import TextIO, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

FAKE_ADDRESS = "192.0.2.53"
FAKE_SUFFIX = ".invalid."


def answer(wire: bytes) -> tuple[bytes | None, dict[str, str]]:
    """Build the reply for one query; also return the log record (empty if undecodable)."""
    try:
        query = dns.message.from_wire(wire)
    except Exception:  # any garbage: no reply, as a real server would drop it
        return None, {}
    if not query.question:
        return None, {}
    question = query.question[0]
    qname = question.name.to_text()
    qtype = dns.rdatatype.to_text(question.rdtype)
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.RA
    if qname.lower().endswith(FAKE_SUFFIX):
        if question.rdtype == dns.rdatatype.A:
            reply.answer.append(
                dns.rrset.from_text(question.name, 0, dns.rdataclass.IN, "A", FAKE_ADDRESS)
            )
    else:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    return reply.to_wire(), {"qname": qname, "qtype": qtype}


class Log:
    """Append-only JSON-lines query log, flushed per record."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, record: dict[str, str], transport: str, peer: str) -> None:
        if not record:
            return
        self._stream.write(json.dumps({**record, "transport": transport, "peer": peer}) + "\n")
        self._stream.flush()


class UdpServer(asyncio.DatagramProtocol):
    def __init__(self, log: Log) -> None:
        self._log = log
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply, record = answer(data)
        self._log.write(record, "udp", f"{addr[0]}:{addr[1]}")
        if reply is not None and self._transport is not None:
            self._transport.sendto(reply, addr)


async def serve_tcp(log: Log, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    try:
        while True:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            reply, record = answer(await reader.readexactly(length))
            log.write(record, "tcp", f"{peer[0]}:{peer[1]}")
            if reply is None:
                break
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(listens: list[tuple[str, int]], log: Log) -> None:
    loop = asyncio.get_running_loop()
    for host, port in listens:
        await loop.create_datagram_endpoint(lambda: UdpServer(log), local_addr=(host, port))
        await asyncio.start_server(
            lambda r, w: serve_tcp(log, r, w), host, port, reuse_address=True
        )
    print("READY", flush=True)
    await asyncio.Event().wait()


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", action="append", type=parse_listen, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    with open(args.log, "a", encoding="utf-8") as stream:
        try:
            asyncio.run(main(args.listen, Log(stream)))
        except KeyboardInterrupt:
            sys.exit(0)
