# libnftables (Debian libnftables1) through ctypes (docs/takeover.md). A context opens its
# netlink socket when it is created, in the network namespace of the creating thread, and keeps
# it until it is freed: so a context made inside a container's namespace speaks to that
# namespace's netfilter from any thread, and a table created through it with the `owner` flag
# is the kernel's to delete when the socket closes, scopedns's exit and crash included.
# Why libnftables rather than pyroute2 or writing netlink messages: it is the nft command's own
# parser and netlink code (the rule text in resolver/divert.py is exactly what `nft` takes and
# prints), it knows the owner flag, and it is six C functions; pyroute2's nftables support is
# partial and would bring a large dependency for one table.
# One call at a time, process-wide: libnftables prints iptables-nft's x_tables expressions
# (Docker's DNAT is one) through libxtables, whose state is global and not thread-safe; listings
# on several namespace threads at once printed Docker's DNAT untranslated (issue 10).
from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import socket
import stat
import threading
from collections.abc import Iterator

LIBRARY = "libnftables.so.1"
NFT_CTX_DEFAULT = 0
CACHE_RELEASE_TABLE = "scopedns_no_such_table"


class NftablesError(Exception):
    """libnftables is missing, or a command failed (the message is nft's own)."""


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()
# Held for every call into the library, on any context (the header says why).
_calls = threading.Lock()


def _library() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            try:
                lib = ctypes.CDLL(LIBRARY)
            except OSError:
                raise NftablesError(f"{LIBRARY} not found: install Debian's libnftables1") from None
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
            for getter in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
                getter.argtypes = [ctypes.c_void_p]
                getter.restype = ctypes.c_char_p
            _lib = lib
        return _lib


def available() -> str | None:
    """None when libnftables can be used, else why not."""
    try:
        _library()
    except NftablesError as error:
        return str(error)
    return None


# libnftables 1.0.x waits for netlink replies with select(): its socket must be a descriptor
# below FD_SETSIZE while a command runs, or glibc aborts the process. A context is kept per
# container (its socket owns the container's table), so the low numbers would run out near
# 1,000 containers. Instead, placeholders hold the low numbers, every socket is parked on a high
# descriptor, and a command borrows a low placeholder for its duration: the socket is dup2'ed
# onto it (same socket, same netlink port, same table ownership) and the placeholder put back
# after (docs/takeover.md, "Descriptors").
FD_SETSIZE = 1024
_reserve: list[int] = []
_reserve_lock = threading.Lock()


def reserve_low_descriptors(keep_free: int = 64) -> int:
    """Hold every free descriptor below FD_SETSIZE with a placeholder (keeping `keep_free` of
    the soft limit for the rest); how many are held. Needs the limit raised first."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FD_SETSIZE + keep_free:
        return 0
    with _reserve_lock:
        while True:
            fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            if fd >= FD_SETSIZE:
                os.close(fd)
                break
            _reserve.append(fd)
        _reserve.sort(reverse=True)
        return len(_reserve)


def _take_low_descriptor() -> int | None:
    with _reserve_lock:
        return _reserve.pop() if _reserve else None


def _give_back_low_descriptor(low: int) -> None:
    """Point `low` at /dev/null again (whatever it held stays open elsewhere) and keep it."""
    placeholder = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.dup2(placeholder, low, inheritable=False)
    finally:
        os.close(placeholder)
    with _reserve_lock:
        _reserve.append(low)


def _refill_reserve() -> None:
    with _reserve_lock:
        if not _reserve:
            return
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        if fd < FD_SETSIZE:
            _reserve.append(fd)
            _reserve.sort(reverse=True)
        else:
            os.close(fd)


class NftContext:
    """One libnftables context: its netlink socket lives in the namespace of the thread that
    created it. Any thread may use it; calls into the library are serialised process-wide."""

    def __init__(self) -> None:
        self._lib = _library()
        with _calls:
            ctx = self._lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not ctx:
            raise NftablesError("nft_ctx_new failed")
        self._ctx: int | None = ctx
        self.warnings = ""  # what nft wrote besides the output on the last command that worked
        fd = self.socket_descriptor()
        if fd is None:
            self.close()
            raise NftablesError("libnftables' context has no netlink socket where scopedns "
                                "expects it (libnftables 1.0.x layout)")
        self._fd = fd
        with _calls:
            self._lib.nft_ctx_buffer_output(ctx)
            self._lib.nft_ctx_buffer_error(ctx)

    def _point_socket_at(self, fd: int) -> None:
        """Tell the context its socket is descriptor `fd` (`struct nft_ctx` begins with its
        `struct mnl_socket *`, which begins with the descriptor)."""
        sock = ctypes.c_void_p.from_address(self._ctx or 0).value
        ctypes.c_int.from_address(sock or 0).value = fd

    @contextlib.contextmanager
    def _low_socket(self) -> Iterator[None]:
        """For one command: the socket on a low descriptor select() can take."""
        if self._fd < FD_SETSIZE:
            yield
            return
        low = _take_low_descriptor()
        if low is None:
            raise NftablesError(f"no descriptor below {FD_SETSIZE} is free for libnftables "
                                "(it uses select())")
        try:
            os.dup2(self._fd, low, inheritable=False)
            self._point_socket_at(low)
            yield
        finally:
            self._point_socket_at(self._fd)
            _give_back_low_descriptor(low)

    def socket_descriptor(self) -> int | None:
        """The context's netlink socket: `struct nft_ctx` begins with its `struct mnl_socket *`,
        which begins with the descriptor (libnftables 1.0.x); checked to be a netlink socket,
        else None."""
        if self._ctx is None:
            return None
        sock = ctypes.c_void_p.from_address(self._ctx).value
        if not sock:
            return None
        fd = ctypes.c_int.from_address(sock).value
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                return None
            with socket.socket(fileno=os.dup(fd)) as probe:
                return fd if probe.family == socket.AF_NETLINK else None
        except OSError:
            return None

    def run(self, command: str) -> str:
        """Run nft command text; its output, or NftablesError with nft's message."""
        with _calls:
            if self._ctx is None:
                raise NftablesError("context already closed")
            with self._low_socket():
                status = self._lib.nft_run_cmd_from_buffer(self._ctx, command.encode())
            output = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
            error = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if status != 0:
            first = next((line for line in error.splitlines() if line.strip()), "failed")
            raise NftablesError(first.strip())
        self.warnings = error.strip()
        return output

    def release_cache(self) -> None:
        """Let libnftables drop its ruleset cache (about 1 MB per context after a listing, as
        its hash tables are sized for big rulesets): listing a table that does not exist
        refreshes the cache down to nothing. Kept contexts call this after each command."""
        with contextlib.suppress(NftablesError):
            self.run(f"list table ip {CACHE_RELEASE_TABLE}\n")

    def close(self) -> None:
        """Free the context: its socket closes, and tables it owns go with it."""
        with _calls:
            if self._ctx is not None:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None
                _refill_reserve()
