# recvmmsg(2) and sendmmsg(2) through ctypes (no compiler on the user's machine): a batch of up
# to BATCH datagrams received with one system call and their replies sent with one more. The
# buffers are allocated once per Batch and reused; the per-datagram work is a few memoryview
# reads and writes. Linux only: `available()` says whether libc has both calls.
from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import struct

BATCH = 32  # datagrams per system call
SLOT = 65536  # bytes per received datagram: a UDP datagram's largest payload fits
SEND_SLOT = 4096  # bytes per reply copied into the send buffer; bigger ones go by sendto
NAME_SLOT = 32  # a sockaddr_in6 (28 bytes) fits
MSG_WAITFORONE = 0x10000
MSG_DONTWAIT = socket.MSG_DONTWAIT
MSG_TRUNC = socket.MSG_TRUNC

# struct iovec {void *base; size_t len;}: 16 bytes; struct mmsghdr: msghdr (56 bytes) and an
# unsigned msg_len, padded to 64. Offsets in the msghdr: name 0, namelen 8, iov 16, iovlen 24,
# control 32, controllen 40, flags 48; msg_len at 56.
IOVEC = 16
MMSGHDR = 64

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def available() -> bool:
    return hasattr(_libc, "recvmmsg") and hasattr(_libc, "sendmmsg")


if available():
    _recvmmsg = _libc.recvmmsg
    _recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                          ctypes.c_void_p]
    _recvmmsg.restype = ctypes.c_int
    _sendmmsg = _libc.sendmmsg
    _sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    _sendmmsg.restype = ctypes.c_int


def _address(buffer: ctypes.Array[ctypes.c_char]) -> int:
    return ctypes.addressof(buffer)


class Batch:
    """Buffers for one thread's recvmmsg/sendmmsg. Not thread-safe: one per thread."""

    def __init__(self, size: int = BATCH) -> None:
        self.size = size
        self._data = ctypes.create_string_buffer(size * SLOT)
        self._out = ctypes.create_string_buffer(size * SEND_SLOT)
        self._names = ctypes.create_string_buffer(size * NAME_SLOT)
        self._iov_in = ctypes.create_string_buffer(size * IOVEC)
        self._iov_out = ctypes.create_string_buffer(size * IOVEC)
        self._msgs_in = ctypes.create_string_buffer(size * MMSGHDR)
        self._msgs_out = ctypes.create_string_buffer(size * MMSGHDR)
        data, out, names = _address(self._data), _address(self._out), _address(self._names)
        iov_in, iov_out = _address(self._iov_in), _address(self._iov_out)
        self._names_base = names
        for i in range(size):
            struct.pack_into("QQ", self._iov_in, i * IOVEC, data + i * SLOT, SLOT)
            struct.pack_into("QQ", self._iov_out, i * IOVEC, out + i * SEND_SLOT, 0)
            struct.pack_into("QI4xQQ", self._msgs_in, i * MMSGHDR, names + i * NAME_SLOT,
                             NAME_SLOT, iov_in + i * IOVEC, 1)
            struct.pack_into("QI4xQQ", self._msgs_out, i * MMSGHDR, names + i * NAME_SLOT,
                             NAME_SLOT, iov_out + i * IOVEC, 1)
        self._msgs_in_address = _address(self._msgs_in)
        self._msgs_out_address = _address(self._msgs_out)
        self._data_view = memoryview(self._data).cast("B")
        self._out_view = memoryview(self._out).cast("B")
        self._names_view = memoryview(self._names).cast("B")
        self._names64 = self._names_view.cast("Q")
        self._in32 = memoryview(self._msgs_in).cast("B").cast("I")
        self._out32 = memoryview(self._msgs_out).cast("B").cast("I")
        self._out64 = memoryview(self._msgs_out).cast("B").cast("Q")
        self._iov_out64 = memoryview(self._iov_out).cast("B").cast("Q")
        self._queued = 0
        self._got = 0

    def receive(self, fd: int, flags: int) -> int:
        """Datagrams now in the batch (0 when none); raises OSError but for EAGAIN/EINTR."""
        in32 = self._in32
        for i in range(self._got):  # the kernel wrote the name lengths of the last batch
            in32[i * 16 + 2] = NAME_SLOT
        got = self._got = _recvmmsg(fd, self._msgs_in, self.size, flags, None)
        if got < 0:
            self._got = 0
            code = ctypes.get_errno()
            if code in (11, 4):  # EAGAIN, EINTR
                return 0
            raise OSError(code, os.strerror(code))
        return got

    def received(self, got: int) -> list[tuple[bytes, int | bytes]]:
        """(datagram, sender) of each datagram of the last receive: the sender as the first 8
        bytes of its sockaddr_in as one int (family, port, IPv4 address), or the raw bytes of
        any other sockaddr."""
        in32, data, names = self._in32, self._data_view, self._names_view
        names64 = self._names64
        found: list[tuple[bytes, int | bytes]] = []
        for i in range(got):
            start = i * SLOT
            name_length = in32[i * 16 + 2]
            found.append((bytes(data[start:start + in32[i * 16 + 14]]),
                          names64[i * 4] if name_length == 16 else
                          bytes(names[i * NAME_SLOT:i * NAME_SLOT + name_length])))
        return found

    def datagram(self, i: int) -> bytes:
        length = self._in32[i * 16 + 14]
        start = i * SLOT
        return bytes(self._data_view[start:start + length])

    def truncated(self, i: int) -> bool:
        return bool(self._in32[i * 16 + 12] & MSG_TRUNC)

    def name(self, i: int) -> bytes:
        start = i * NAME_SLOT
        return bytes(self._names_view[start:start + self._in32[i * 16 + 2]])

    def queue(self, i: int, reply: bytes) -> bool:
        """Queue `reply` to the sender of datagram `i`; False when too big for the batch."""
        length = len(reply)
        if length > SEND_SLOT:
            return False
        j = self._queued
        start = j * SEND_SLOT
        self._out_view[start:start + length] = reply
        self._iov_out64[j * 2 + 1] = length
        self._out64[j * 8] = self._names_base + i * NAME_SLOT
        self._out32[j * 16 + 2] = self._in32[i * 16 + 2]
        self._queued = j + 1
        return True

    def flush(self, fd: int) -> int:
        """Send the queued replies; how many the kernel took (the rest are dropped, as a full
        socket buffer drops UDP)."""
        queued, self._queued = self._queued, 0
        if not queued:
            return 0
        sent = _sendmmsg(fd, self._msgs_out, queued, MSG_DONTWAIT)
        return max(sent, 0)
