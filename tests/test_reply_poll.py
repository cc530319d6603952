# The UDP tries' poller (resolver/reply_poll.py, docs/forwarding-cache.md "The UDP forward
# path"): every try's time limit fires once and in time order unless the try ended first (then
# never, however the heap is ordered), limits added while others fire are kept, a socket's
# datagram reaches its own callback among several in flight, and try IDs are random 16-bit
# numbers drawn a block at a time.
from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

from resolver.reply_poll import ID_BLOCK, RandomIds, ReplyPoller


async def test_limits_fire_in_order_and_cancelled_ones_never() -> None:
    loop = asyncio.get_running_loop()
    poller = ReplyPoller(loop)
    fired: list[str] = []
    done = loop.create_future()
    now = time.monotonic()

    def late() -> None:
        fired.append("late")
        done.set_result(None)

    def first() -> None:
        fired.append("first")  # a next try's limit, added while limits fire
        poller.expire_at(time.monotonic() + 0.02, late)

    poller.expire_at(now + 0.03, lambda: fired.append("second"))
    answered = poller.expire_at(now + 0.01, lambda: fired.append("answered"))
    poller.expire_at(now + 0.02, first)
    answered_later = poller.expire_at(now + 0.04, lambda: fired.append("answered later"))
    poller.cancel(answered)  # on top of the heap
    poller.cancel(answered_later)  # at its bottom
    await asyncio.wait_for(done, 5)
    await asyncio.sleep(0.03)
    assert fired == ["first", "second", "late"]
    poller.close()


async def test_each_ready_socket_reaches_its_own_callback() -> None:
    loop = asyncio.get_running_loop()
    poller = ReplyPoller(loop)
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(3)]
    got: list[tuple[int, bytes]] = []
    done = loop.create_future()

    def reader(index: int, sock: socket.socket) -> Callable[[], None]:
        def read() -> None:
            got.append((index, sock.recv(100)))
            poller.forget(sock.fileno())
            if len(got) == 2:
                done.set_result(None)
        return read

    for index, (ours, _) in enumerate(pairs):
        ours.setblocking(False)
        poller.watch(ours.fileno(), reader(index, ours))
    pairs[2][1].send(b"two")
    pairs[0][1].send(b"zero")
    await asyncio.wait_for(done, 5)
    assert sorted(got) == [(0, b"zero"), (2, b"two")]
    poller.close()
    for ours, theirs in pairs:
        ours.close()
        theirs.close()


def test_ids_are_16_bit_and_not_repeated_in_step() -> None:
    ids = RandomIds()
    drawn = [ids.next() for _ in range(ID_BLOCK)]  # crosses into a second block
    assert all(0 <= ident < 65536 for ident in drawn)
    assert len(set(drawn)) > len(drawn) // 2  # random, not a counter stuck on a value
    other = RandomIds()
    assert [other.next() for _ in range(8)] != drawn[:8]
