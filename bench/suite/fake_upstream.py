# The fake upstream of profile (c): a tiny uvloop UDP responder on loopback that answers every
# `*.invalid` A query with 192.0.2.53, TTL 0 (so no forwarder can cache it) unless a label of
# the name is `ttlN` (then TTL N: profile (d), answers a cache may keep), and REFUSED for
# anything else. Built from the query's bytes, no DNS library per packet, so it stays far
# cheaper than the forwarders it feeds. Nothing it answers leaves the host.
# Run: python -m bench.suite.fake_upstream [--host ADDR] --port PORT (prints READY once bound).
from __future__ import annotations

import argparse
import asyncio
import struct
from typing import cast

ANSWER = bytes([192, 0, 2, 53])
HEADER = struct.Struct("!HHHHHH")
FLAG_RD = 0x0100
FLAG_CD = 0x0010
REFUSED = 5


def question_end(packet: bytes) -> int | None:
    """Offset just past the question (name, type, class), or None if it does not parse."""
    offset = HEADER.size
    while offset < len(packet):
        length = packet[offset]
        if length == 0:
            end = offset + 5
            return end if end <= len(packet) else None
        if length & 0xC0:
            return None
        offset += length + 1
    return None


def labels(packet: bytes, end: int) -> list[bytes]:
    """The labels of the question name (their bytes, lower case)."""
    offset, found = HEADER.size, []
    while offset < end - 5:
        length = packet[offset]
        found.append(packet[offset + 1:offset + 1 + length].lower())
        offset += length + 1
    return found


def ttl_of(names: list[bytes]) -> int:
    """N for a name with a `ttlN` label, else 0."""
    for label in names:
        if label.startswith(b"ttl") and label[3:].isdigit():
            return min(int(label[3:]), 2**31 - 1)
    return 0


def reply(packet: bytes) -> bytes | None:
    if len(packet) < HEADER.size:
        return None
    ident, flags, qdcount = HEADER.unpack_from(packet)[:3]
    end = question_end(packet)
    if flags & 0x8000 or qdcount != 1 or end is None:
        return None
    kept = flags & (FLAG_RD | FLAG_CD) | 0x8080  # QR, RA, RD and CD copied
    question = packet[HEADER.size:end]
    qtype = question[-4:-2]
    names = labels(packet, end)
    if not names or names[-1] != b"invalid":
        return HEADER.pack(ident, kept | REFUSED, 1, 0, 0, 0) + question
    if qtype != b"\x00\x01":
        return HEADER.pack(ident, kept, 1, 0, 0, 0) + question
    record = b"\xc0\x0c\x00\x01\x00\x01" + struct.pack("!IH", ttl_of(names), 4) + ANSWER
    return HEADER.pack(ident, kept, 1, 1, 0, 0) + question + record


class Responder(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is no subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        answer = reply(data)
        if answer is not None:
            self.transport.sendto(answer, addr)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Responder, local_addr=(host, port))
    print("READY", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="fake upstream for *.invalid (loopback only)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback or an sbench- gateway")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
