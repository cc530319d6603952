# libnftables (Debian libnftables1) through ctypes (docs/takeover.md). A context opens its
# netlink socket when it is created, in the network namespace of the creating thread, and keeps
# it until it is freed: so a context made inside a container's namespace speaks to that
# namespace's netfilter from any thread, and a table created through it with the `owner` flag
# is the kernel's to delete when the socket closes, scopedns's exit and crash included.
# Why libnftables rather than pyroute2 or writing netlink messages: it is the nft command's own
# parser and netlink code (the rule text in resolver/divert.py is exactly what `nft` takes and
# prints), it knows the owner flag, and it is six C functions; pyroute2's nftables support is
# partial and would bring a large dependency for one table.
from __future__ import annotations

import contextlib
import ctypes
import threading

LIBRARY = "libnftables.so.1"
NFT_CTX_DEFAULT = 0
CACHE_RELEASE_TABLE = "scopedns_no_such_table"


class NftablesError(Exception):
    """libnftables is missing, or a command failed (the message is nft's own)."""


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


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


class NftContext:
    """One libnftables context: its netlink socket lives in the namespace of the thread that
    created it. Not thread-safe: one caller at a time."""

    def __init__(self) -> None:
        self._lib = _library()
        ctx = self._lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not ctx:
            raise NftablesError("nft_ctx_new failed")
        self._ctx: int | None = ctx
        self._lib.nft_ctx_buffer_output(ctx)
        self._lib.nft_ctx_buffer_error(ctx)
        self._lock = threading.Lock()

    def run(self, command: str) -> str:
        """Run nft command text; its output, or NftablesError with nft's message."""
        with self._lock:
            if self._ctx is None:
                raise NftablesError("context already closed")
            status = self._lib.nft_run_cmd_from_buffer(self._ctx, command.encode())
            output = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
            error = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if status != 0:
            first = next((line for line in error.splitlines() if line.strip()), "failed")
            raise NftablesError(first.strip())
        return output

    def release_cache(self) -> None:
        """Let libnftables drop its ruleset cache (about 1 MB per context after a listing, as
        its hash tables are sized for big rulesets): listing a table that does not exist
        refreshes the cache down to nothing. Kept contexts call this after each command."""
        with contextlib.suppress(NftablesError):
            self.run(f"list table ip {CACHE_RELEASE_TABLE}\n")

    def close(self) -> None:
        """Free the context: its socket closes, and tables it owns go with it."""
        with self._lock:
            if self._ctx is not None:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None
