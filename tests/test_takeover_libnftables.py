# libnftables under takeover's namespace threads (docs/takeover.md, "One libnftables call at a
# time"): libnftables prints iptables-nft's x_tables targets (Docker's DNAT) through libxtables,
# whose state is process-global and not thread-safe. Listings on several threads at once printed
# Docker's DNAT as `xt target DNAT`, now and then for the rest of the process, and every take
# then failed (issue 10). So every call into the library, on any context, runs alone. Checked
# with a stand-in library that counts the calls in progress: no real netfilter is touched.
from __future__ import annotations

import ctypes
import socket
import threading
import time
from typing import Any

import pytest

from resolver import nftables
from resolver.nftables import NftContext

NETLINK_NETFILTER = 12
THREADS = 4


class CountingLibrary:
    """libnftables' six functions; each call stays in the library a moment and is counted."""

    def __init__(self) -> None:
        self._count = threading.Lock()
        self.inside = 0
        self.most_at_once = 0
        self.calls = 0
        # struct nft_ctx starts with a pointer to struct mnl_socket, which starts with its
        # descriptor (what NftContext checks): one such pair per context, kept alive here.
        self._memory: list[Any] = []
        self._sockets: list[socket.socket] = []

    def _enter(self) -> None:
        with self._count:
            self.inside += 1
            self.calls += 1
            self.most_at_once = max(self.most_at_once, self.inside)
        time.sleep(0.002)  # long enough for another thread to come in, were it allowed
        with self._count:
            self.inside -= 1

    def nft_ctx_new(self, flags: int) -> int:
        self._enter()
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        descriptor = ctypes.c_int(sock.fileno())
        mnl = ctypes.c_void_p(ctypes.addressof(descriptor))
        self._sockets.append(sock)
        self._memory += [descriptor, mnl]
        return ctypes.addressof(mnl)

    def nft_ctx_buffer_output(self, ctx: int) -> None:
        self._enter()

    def nft_ctx_buffer_error(self, ctx: int) -> None:
        self._enter()

    def nft_run_cmd_from_buffer(self, ctx: int, command: bytes) -> int:
        self._enter()
        return 0

    def nft_ctx_get_output_buffer(self, ctx: int) -> bytes:
        self._enter()
        return b"table ip nat {\n}\n"

    def nft_ctx_get_error_buffer(self, ctx: int) -> bytes:
        self._enter()
        return b""

    def nft_ctx_free(self, ctx: int) -> None:
        self._enter()

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


def test_listings_on_many_namespace_threads_never_run_in_the_library_together(
        monkeypatch: pytest.MonkeyPatch) -> None:
    library = CountingLibrary()
    monkeypatch.setattr(nftables, "_library", lambda: library)
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def take_like_a_worker() -> None:  # what one take and one check do, on one thread
        try:
            start.wait()
            context = NftContext()
            for _ in range(3):
                context.run("list ruleset\n")
                context.release_cache()
            context.close()
        except BaseException as error:  # reported below, not lost in the thread
            failures.append(error)

    threads = [threading.Thread(target=take_like_a_worker) for _ in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        library.close()
    assert not failures, failures
    assert library.calls >= THREADS * 10  # every thread did its work
    assert library.most_at_once == 1  # and never two calls in the library at once
