# recvmmsg(2) and sendmmsg(2) through ctypes, so that no compiler is needed on a user's machine:
# up to BATCH datagrams received with one system call and their replies sent with one more
# (docs/performance.md). The buffers of a Batch are allocated once and reused; per datagram
# the work is a few memoryview reads and writes. Linux only: `available()` says whether libc
# has both calls.
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import struct

# Datagrams per system call: a burst this long is read at once, and a full batch costs ~2 MiB.
BATCH = 32
SLOT = 65536  # bytes per received datagram: the largest UDP payload fits, nothing is cut
SEND_SLOT = 4096  # bytes per reply copied into the send buffer; a bigger one goes by sendto
NAME_SLOT = 32  # a sockaddr_in6 (28 bytes) fits

# struct iovec {void *base; size_t len;}: 16 bytes. struct mmsghdr: a msghdr (name 0, namelen
# 8, iov 16, iovlen 24, control 32, controllen 40, flags 48) and the unsigned msg_len at 56,
# padded to 64. The views below index them as 32- and 64-bit words.
IOVEC = 16
MMSGHDR = 64
_NAMELEN, _MSG_LEN = 2, 14  # in 32-bit words of one mmsghdr (16 words)
_SOCKADDR_IN = 16  # bytes of an IPv4 sender's name

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_FULL = (errno.EAGAIN, errno.EWOULDBLOCK)

Sender = int | bytes


def available() -> bool:
    """Whether this libc has recvmmsg and sendmmsg (glibc and musl on Linux do)."""
    return hasattr(_libc, "recvmmsg") and hasattr(_libc, "sendmmsg")


if available():
    _recvmmsg = _libc.recvmmsg
    _recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                          ctypes.c_void_p]
    _recvmmsg.restype = ctypes.c_int
    _sendmmsg = _libc.sendmmsg
    _sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    _sendmmsg.restype = ctypes.c_int


def sender_address(sender: Sender) -> tuple[str, tuple[str, int] | tuple[str, int, int, int]]:
    """A sender from `Batch.received` as socket.recvfrom gives it: (host, the address tuple
    for sendto)."""
    raw = sender.to_bytes(8, "little") if isinstance(sender, int) else sender
    family, port = int.from_bytes(raw[:2], "little"), int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET:
        host = socket.inet_ntop(socket.AF_INET, raw[4:8])
        return host, (host, port)
    if family != socket.AF_INET6 or len(raw) < 28:
        raise ValueError(f"unexpected sender address family {family}")
    host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
    flow, scope = int.from_bytes(raw[4:8], "big"), int.from_bytes(raw[24:28], "little")
    return host, (host, port, flow, scope)


class Batch:
    """One thread's buffers for recvmmsg and sendmmsg; not to be shared between threads."""

    def __init__(self, size: int = BATCH) -> None:
        self.size = size
        self._data = ctypes.create_string_buffer(size * SLOT)
        self._out = ctypes.create_string_buffer(size * SEND_SLOT)
        self._names = ctypes.create_string_buffer(size * NAME_SLOT)
        self._iov_in = ctypes.create_string_buffer(size * IOVEC)
        self._iov_out = ctypes.create_string_buffer(size * IOVEC)
        self._msgs_in = ctypes.create_string_buffer(size * MMSGHDR)
        self._msgs_out = ctypes.create_string_buffer(size * MMSGHDR)
        self._names_at = ctypes.addressof(self._names)
        self._msgs_out_at = ctypes.addressof(self._msgs_out)
        data, out = ctypes.addressof(self._data), ctypes.addressof(self._out)
        iov_in, iov_out = ctypes.addressof(self._iov_in), ctypes.addressof(self._iov_out)
        for i in range(size):
            struct.pack_into("QQ", self._iov_in, i * IOVEC, data + i * SLOT, SLOT)
            struct.pack_into("QQ", self._iov_out, i * IOVEC, out + i * SEND_SLOT, 0)
            name = self._names_at + i * NAME_SLOT
            struct.pack_into("QI4xQQ", self._msgs_in, i * MMSGHDR, name, NAME_SLOT,
                             iov_in + i * IOVEC, 1)
            struct.pack_into("QI4xQQ", self._msgs_out, i * MMSGHDR, name, NAME_SLOT,
                             iov_out + i * IOVEC, 1)
        self._data_view = memoryview(self._data).cast("B")
        self._out_view = memoryview(self._out).cast("B")
        self._names_view = memoryview(self._names).cast("B")
        self._names64 = self._names_view.cast("Q")
        self._in32 = memoryview(self._msgs_in).cast("B").cast("I")
        self._out32 = memoryview(self._msgs_out).cast("B").cast("I")
        self._out64 = memoryview(self._msgs_out).cast("B").cast("Q")
        self._iov_out64 = memoryview(self._iov_out).cast("B").cast("Q")
        self._got = 0  # datagrams of the last receive
        self._queued = 0  # replies waiting for send()

    def receive(self, fd: int) -> int:
        """Read what is queued on `fd`, up to `size` datagrams, without waiting; 0 when
        nothing is. Raises OSError for errors other than EAGAIN and EINTR."""
        self._queued = 0  # replies of a batch that failed half-way are never sent later
        in32 = self._in32
        for i in range(self._got):  # the kernel wrote the name lengths of the last batch
            in32[i * 16 + _NAMELEN] = NAME_SLOT
        got: int = _recvmmsg(fd, self._msgs_in, self.size, socket.MSG_DONTWAIT, None)
        if got < 0:
            self._got = 0
            code = ctypes.get_errno()
            if code in _FULL or code == errno.EINTR:
                return 0
            raise OSError(code, os.strerror(code))
        self._got = got
        return got

    def received(self) -> list[tuple[bytes, Sender]]:
        """(datagram, sender) of each datagram of the last receive. An IPv4 sender is the first
        8 bytes of its sockaddr_in as one int (family, port, address: a cheap dictionary
        key), any other the bytes of its sockaddr; sender_address() reads either."""
        in32, data, names, names64 = self._in32, self._data_view, self._names_view, self._names64
        found: list[tuple[bytes, Sender]] = []
        for i in range(self._got):
            start, name_length = i * SLOT, in32[i * 16 + _NAMELEN]
            found.append((bytes(data[start:start + in32[i * 16 + _MSG_LEN]]),
                          names64[i * 4] if name_length == _SOCKADDR_IN else
                          bytes(names[i * NAME_SLOT:i * NAME_SLOT + name_length])))
        return found

    def reply(self, i: int, reply: bytes) -> bool:
        """Queue `reply` to the sender of datagram `i` of the last receive; False (nothing
        queued) when it is longer than SEND_SLOT."""
        length = len(reply)
        if length > SEND_SLOT:
            return False
        j = self._queued
        start = j * SEND_SLOT
        self._out_view[start:start + length] = reply
        self._iov_out64[j * 2 + 1] = length
        self._out64[j * 8] = self._names_at + i * NAME_SLOT
        self._out32[j * 16 + _NAMELEN] = self._in32[i * 16 + _NAMELEN]
        self._queued = j + 1
        return True

    def send(self, fd: int) -> int:
        """Send the queued replies without waiting; how many were not sent. A reply the kernel
        refuses (an unreachable client) is skipped; on a full socket buffer the rest are
        dropped, as UDP drops them."""
        queued, self._queued = self._queued, 0
        done = lost = 0
        while done < queued:
            sent = _sendmmsg(fd, self._msgs_out_at + done * MMSGHDR, queued - done,
                             socket.MSG_DONTWAIT)
            if sent > 0:
                done += sent
                continue
            code = ctypes.get_errno()
            if code == errno.EINTR:
                continue
            if code in _FULL:
                return lost + queued - done
            done += 1  # this one cannot go; the next ones may
            lost += 1
        return lost
