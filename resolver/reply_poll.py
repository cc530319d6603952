# Waiting for upstream replies over UDP cheaply (docs/forwarding-cache.md, "The UDP forward
# path"): the fresh socket of every try in flight sits in one epoll of ours, and the event loop
# watches that one descriptor. A try costs one epoll_ctl (closing the socket takes it out of
# the set) instead of the loop's per-descriptor reader (a poll handle: five system calls to
# start watching, three to stop), and a wake-up reads every ready socket after one epoll_wait.
# The tries' time limits share one loop timer, armed for the earliest (a heap; an answered
# try's entry is marked, and leaves when it reaches the top), instead of a timer handle
# made and cancelled per try. Also the random IDs of the tries, drawn from the kernel's CSPRNG
# a block at a time. It opens no client socket (resolver/forward.py does).
from __future__ import annotations

import asyncio
import heapq
import math
import os
import select
import time
from collections.abc import Callable
from typing import Any, Final

# At most this many ready sockets per wake-up; more stay ready (level-triggered) for the next.
MAX_EVENTS: Final = 256
# Random bytes fetched at once for IDs: one getrandom call per 2,048 tries, not two per try.
ID_BLOCK: Final = 4096
# The loop's timers have millisecond resolution: a limit due within this much is due now.
TIMER_SLACK: Final = 0.001

# A time limit: [when (time.monotonic), sequence number, what to call or None once cancelled].
Deadline = list[Any]


class RandomIds:
    """16-bit IDs from os.urandom (the kernel's CSPRNG, as `secrets` uses), read a block at a
    time; each ID is two fresh bytes, never reused."""

    __slots__ = ("_block", "_offset")

    def __init__(self) -> None:
        self._block = b""
        self._offset = 0

    def next(self) -> int:
        offset = self._offset
        if offset >= len(self._block):
            self._block, offset = os.urandom(ID_BLOCK), 0
        self._offset = offset + 2
        return (self._block[offset] << 8) | self._block[offset + 1]


class ReplyPoller:
    """One epoll for the sockets of the UDP tries in flight, read by the loop as one reader.
    `watch` a socket until it is closed; `forget` its descriptor before closing it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll: select.epoll | None = None
        self._waiting: dict[int, Callable[[], None]] = {}
        self._deadlines: list[Deadline] = []  # a heap
        self._sequence = 0
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = math.inf

    def watch(self, fd: int, on_readable: Callable[[], None]) -> None:
        """Call `on_readable` whenever `fd` has a datagram (or an error) to read."""
        epoll = self._epoll
        if epoll is None:
            epoll = self._epoll = select.epoll()
            self._loop.add_reader(epoll.fileno(), self._ready)
        epoll.register(fd, select.EPOLLIN)
        self._waiting[fd] = on_readable

    def forget(self, fd: int) -> None:
        """Stop calling back for `fd`; the caller closes it next (which leaves the epoll)."""
        self._waiting.pop(fd, None)

    def end(self, fd: int, deadline: Deadline | None) -> None:
        """A try is over: `forget` its descriptor and `cancel` its limit, in one call."""
        self.forget(fd)
        if deadline is not None:
            self.cancel(deadline)

    def _ready(self) -> None:
        epoll = self._epoll
        if epoll is None:
            return
        waiting = self._waiting
        if len(waiting) == 1:  # one try in flight: it is the ready one, no epoll_wait needed
            for only in list(waiting.values()):
                only()  # reads until EAGAIN or its reply; a closed socket leaves the epoll
            return
        for fd, _ in epoll.poll(0, MAX_EVENTS):
            # A descriptor closed earlier in this wake-up may already be reused by a new try:
            # its callback then reads nothing (non-blocking) or the new try's reply.
            on_readable = waiting.get(fd)
            if on_readable is not None:
                on_readable()

    def expire_at(self, when: float, on_timeout: Callable[[], None]) -> Deadline:
        """Call `on_timeout` at `when` (time.monotonic) unless the limit is `cancel`led."""
        self._sequence += 1
        deadline = [when, self._sequence, on_timeout]
        heapq.heappush(self._deadlines, deadline)
        if when < self._armed_for:
            self._arm(when)
        return deadline

    def cancel(self, deadline: Deadline) -> None:
        """The try ended in time: its limit will not fire. Cancelled entries on top leave at
        once (replies come back mostly in order, so the heap stays about as long as the tries
        in flight); the timer may then fire for nothing and re-arm."""
        deadline[2] = None
        heap = self._deadlines
        while heap and heap[0][2] is None:
            heapq.heappop(heap)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = when
        self._timer = self._loop.call_later(max(0.0, when - time.monotonic()), self._expire)

    def _expire(self) -> None:
        """The timer fired: call every limit that is due, drop the cancelled ones on top,
        arm for the next."""
        self._timer, self._armed_for = None, math.inf
        heap = self._deadlines
        due = time.monotonic() + TIMER_SLACK
        while heap and (heap[0][2] is None or heap[0][0] <= due):
            deadline = heapq.heappop(heap)
            on_timeout, deadline[2] = deadline[2], None
            if on_timeout is not None:
                on_timeout()  # may add limits (the next try), arming the timer again
        if heap and heap[0][0] < self._armed_for:
            self._arm(heap[0][0])

    def close(self) -> None:
        """The server is closing: stop watching (the tries close their own sockets)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed_for = None, math.inf
        self._deadlines.clear()
        epoll, self._epoll = self._epoll, None
        if epoll is not None:
            self._loop.remove_reader(epoll.fileno())
            epoll.close()
        self._waiting.clear()
