# Entering a container's network namespace (docs/takeover.md): Python 3.11 has no os.setns, so
# a few helper threads call libc's setns(2) and come back to the namespace they started in. What
# they create there (sockets, netlink contexts) keeps that namespace after the thread has left,
# so the event loop uses it as any other socket. The loop's own thread never moves. A namespace
# is opened from its file (Docker's SandboxKey), never from a PID that may be reused, and the
# process's own namespace is refused: takeover must never touch the host's rules.
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
# Namespace work is short (a setns, a few sockets, one netlink batch): a few threads take over
# hundreds of containers at once without queueing them behind each other.
WORKER_THREADS = 4
OWN_NAMESPACE = "/proc/self/ns/net"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int


class NamespaceError(Exception):
    """A namespace cannot be opened or entered; the message names it and why."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def namespace_inode(fd: int) -> tuple[int, int]:
    stat = os.fstat(fd)
    return stat.st_dev, stat.st_ino


@dataclass
class Namespace:
    """An open network namespace file: while it is open, the namespace lives."""

    path: str
    fd: int

    @property
    def fd_path(self) -> str:
        """A path to this very namespace for child processes (nsenter --net=...)."""
        return f"/proc/{os.getpid()}/fd/{self.fd}"

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def address_is_local(address: str) -> bool:
    """Is `address` assigned in the calling thread's namespace (can a socket bind it)?"""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


class NamespaceWorker:
    """Runs functions inside a network namespace on helper threads."""

    def __init__(self, threads: int = WORKER_THREADS) -> None:
        self._home = os.open(OWN_NAMESPACE, os.O_RDONLY | os.O_CLOEXEC)
        self._home_inode = namespace_inode(self._home)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="netns")
        self._broken = threading.Event()

    def open(self, path: str) -> Namespace:
        """Open the namespace file at `path`; refuse anything that is not a network namespace
        other than our own."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            raise NamespaceError(f"cannot open namespace {path}: {error.strerror}") from None
        if namespace_inode(fd) == self._home_inode:
            os.close(fd)
            raise NamespaceError(f"{path} is scopedns's own network namespace: left alone")
        return Namespace(path, fd)

    def call_in(self, namespace: Namespace, work: Callable[[], T]) -> T:
        """Run `work` on this thread inside `namespace`, then come home."""
        if self._broken.is_set():
            raise NamespaceError("a helper thread could not return to its namespace")
        try:
            _setns(namespace.fd)
        except OSError as error:
            if error.errno == errno.EINVAL:
                raise NamespaceError(f"{namespace.path} is not a network namespace") from None
            raise NamespaceError(f"cannot enter {namespace.path}: {error.strerror}") from None
        try:
            return work()
        finally:
            try:
                _setns(self._home)
            except OSError:
                # This thread would create the next sockets in a container: never use it again.
                self._broken.set()
                raise

    async def run(self, namespace: Namespace, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.call_in, namespace, work)

    async def socket_in(self, namespace: Namespace, family: int, kind: int) -> socket.socket:
        """A fresh socket living in `namespace` (forwards to Docker's resolver there)."""
        return await self.run(namespace, lambda: socket.socket(family, kind))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        os.close(self._home)
