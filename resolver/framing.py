# TCP message framing (RFC 1035 §4.2.2, RFC 7766 §8): a 2-byte length before each message.
# Pure: push bytes as they arrive, pop whole messages out one at a time (so a reader that must
# stop, because its client does not read the replies, leaves the rest here); several may come in
# one read, one may come a byte at a time. A frame is at most 65535 bytes by construction, so the
# buffer is bounded by one frame plus one read.
from __future__ import annotations

import struct


class TcpFramer:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._offset = 0  # start of the first message not yet popped

    def push(self, data: bytes) -> None:
        """Add received bytes."""
        if self._offset:
            del self._buffer[: self._offset]
            self._offset = 0
        self._buffer += data

    def pop(self) -> bytes | None:
        """The next complete message, or None until more bytes arrive."""
        buffer, offset = self._buffer, self._offset
        if len(buffer) - offset < 2:
            return None
        end = offset + 2 + ((buffer[offset] << 8) | buffer[offset + 1])
        if len(buffer) < end:
            return None
        self._offset = end
        return bytes(buffer[offset + 2 : end])

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every message now complete, in order."""
        self.push(data)
        messages: list[bytes] = []
        while (message := self.pop()) is not None:
            messages.append(message)
        return messages

    @property
    def pending(self) -> int:
        """Bytes not yet popped: complete messages waiting, then an unfinished frame."""
        return len(self._buffer) - self._offset


def frame(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message
