# TCP message framing (RFC 1035 §4.2.2, RFC 7766 §8): a 2-byte length before each message.
# Pure: feed bytes as they arrive, take whole messages out; several may come in one read, one
# may come a byte at a time. A frame is at most 65535 bytes by construction, so the buffer is
# bounded by one frame plus one read.
from __future__ import annotations

import struct


class TcpFramer:
    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every message now complete, in order."""
        self._buffer += data
        messages: list[bytes] = []
        offset = 0
        while len(self._buffer) - offset >= 2:
            length = (self._buffer[offset] << 8) | self._buffer[offset + 1]
            if len(self._buffer) - offset - 2 < length:
                break
            messages.append(bytes(self._buffer[offset + 2 : offset + 2 + length]))
            offset += 2 + length
        if offset:
            del self._buffer[:offset]
        return messages

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still waiting for the rest."""
        return len(self._buffer)


def frame(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message
