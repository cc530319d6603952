# Forwarding upstream (docs/forwarding.md): same transport as the client, a fresh random ID
# and source port per try, replies checked against source, ID and question (anything else is
# dropped as spoofing), failover on SERVFAIL, REFUSED, timeout or a dead port within a total
# budget, a cap on forwards in flight, and UDP replies cut to the client's size (whole
# answer records that fit, TC set: RFC 1035 §4.2.1, RFC 6891 §7). Upstreams that keep failing
# are tried last and probed beside real queries (resolver/health.py); answers go to the cache
# (resolver/cache.py, docs/forwarding-cache.md). The only module that opens client sockets.
from __future__ import annotations

import _socket
import asyncio
import logging
import socket
import struct
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from dns.rcode import REFUSED, SERVFAIL

from resolver.cache import AnswerCache
from resolver.exchange import SocketOpener, Upstream, exchange_tcp, exchange_udp, plain_socket
from resolver.health import UpstreamHealth
from resolver.reply_poll import Deadline, RandomIds, ReplyPoller
from resolver.stats import UpstreamStats
from resolver.upstream_reply import fit_udp, matches
from resolver.wire import UDP_DEFAULT_SIZE, Query

log = logging.getLogger(__name__)

_TRY_NEXT = frozenset({SERVFAIL, REFUSED})


class ForwardRefused(Exception):
    """More forwards in flight than --max-forwards: the caller answers REFUSED."""


class InFlight:
    """A count of forwards in flight shared by several forwarders, and its cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0


class Forwarder:
    def __init__(self, upstreams: Sequence[Upstream], timeout: float, budget: float,
                 max_in_flight: int, *, open_socket: SocketOpener = plain_socket,
                 total: InFlight | None = None,
                 tcp_upstreams: Sequence[Upstream] | None = None,
                 cache: AnswerCache | None = None,
                 health: UpstreamHealth | None = None,
                 cache_lock: AbstractContextManager[Any] | None = None) -> None:
        """`max_in_flight` caps this forwarder; `total`, when given, is a cap shared with
        others (takeover: a quarter of --max-forwards per container, under the whole).
        `tcp_upstreams` pair with `upstreams` index by index (the same server's TCP port).
        `cache_lock` is held to store into `cache` (its readers may be on another thread)."""
        self.upstreams = tuple(upstreams)
        self.timeout = timeout
        self.budget = budget
        self._max_in_flight = max_in_flight
        self._open_socket = open_socket
        # Sockets opened here (not in another namespace): UDP may use forward_udp.
        self.plain_sockets = open_socket is plain_socket
        self._total = total
        # Where TCP queries go when not to `upstreams` (Docker's resolver: one port per transport).
        self.tcp_upstreams = tuple(tcp_upstreams) if tcp_upstreams else None
        self.in_flight = 0
        self._cache = cache
        self._cache_lock = cache_lock or nullcontext()
        self.health = health or UpstreamHealth([str(u) for u in self.upstreams])
        self._probes: set[asyncio.Task[None]] = set()
        self._pending: set[UdpForward] = set()
        # Made by the first UDP forward, on the loop: its sockets' epoll, and the try IDs.
        self._poller: ReplyPoller | None = None
        self.ids = RandomIds()
        # Per upstream tries, outcomes and latency, read by /metrics (docs/operations.md).
        self.stats: defaultdict[Upstream, UpstreamStats] = defaultdict(UpstreamStats)
        for upstream in (*self.upstreams, *(self.tcp_upstreams or ())):
            self.stats[upstream] = UpstreamStats()

    def forward_udp(self, query: Query, data: bytes,
                    deliver: Callable[[bytes | None], None]) -> None:
        """Forward over UDP with callbacks, no task per query (plain sockets only): `deliver`
        is called once with the reply for the client, or None when every try failed."""
        self._admit()
        if self._poller is None:
            self._poller = ReplyPoller(asyncio.get_running_loop())
        exchange = UdpForward(self, self._poller, query, data, deliver)
        self._pending.add(exchange)
        exchange.start()

    def _admit(self) -> None:
        """Count one more forward in flight, here and in the shared total; ForwardRefused
        past either cap."""
        total = self._total
        if self.in_flight >= self._max_in_flight or (total is not None
                                                     and total.count >= total.limit):
            raise ForwardRefused
        self.in_flight += 1
        if total is not None:
            total.count += 1

    def _done(self) -> None:
        self.in_flight -= 1
        if self._total is not None:
            self._total.count -= 1

    def finished(self, exchange: UdpForward) -> None:
        if exchange in self._pending:
            self._pending.discard(exchange)
            self._done()

    async def forward(self, query: Query, data: bytes, tcp: bool) -> bytes | None:
        """The upstream's reply with the client's ID restored, or None if every try failed."""
        self._admit()
        try:
            return await self._try_each(query, data, tcp)
        finally:
            self._done()

    def close(self) -> None:
        """Cancel the probes and the UDP forwards in flight (the server is closing)."""
        for probe in self._probes:
            probe.cancel()
        for exchange in list(self._pending):
            exchange.cancel()
        if self._poller is not None:
            self._poller.close()

    async def _try_each(self, query: Query, data: bytes, tcp: bool) -> bytes | None:
        deadline = time.monotonic() + self.budget
        upstreams = self.tcp_upstreams if tcp and self.tcp_upstreams else self.upstreams
        for index in self.plan(query, data, tcp):
            if index >= len(upstreams):
                continue
            upstream = upstreams[index]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            reply = await self._try_one(upstream, query, data, tcp, min(self.timeout, remaining))
            if reply is None:
                self.health.failed(index)
                continue
            relayed = self.relayed(index, query, data, reply, tcp)
            if relayed is not None:
                return relayed
        return None

    def relayed(self, index: int, query: Query, data: bytes, reply: bytes,
                tcp: bool) -> bytes | None:
        """What the client gets for upstream `index`'s matching reply, or None to try the
        next upstream (SERVFAIL, REFUSED). Answers go to the cache first."""
        self.health.succeeded(index)
        rcode = reply[3] & 0x0F
        outcomes = self.stats[self.upstreams[index]].outcomes
        outcomes["answer" if rcode not in _TRY_NEXT else
                 "servfail" if rcode == SERVFAIL else "refused"] += 1
        if rcode in _TRY_NEXT:
            log.info("upstream %s answered rcode %d for %s", self.upstreams[index], rcode,
                     query.qname)
            return None
        if self._cache is not None:
            with self._cache_lock:
                self._cache.store(query, reply)
        relayed = data[:2] + reply[2:]
        # Every client takes 512 bytes: only a longer reply needs fit_udp's look.
        return relayed if tcp or len(relayed) <= UDP_DEFAULT_SIZE else fit_udp(relayed, query)

    def plan(self, query: Query, data: bytes, tcp: bool) -> list[int]:
        """The upstreams to try in order; starts a probe of a down one if one is due."""
        order, probe = self.health.plan()
        if probe is not None:
            self._start_probe(probe, query, data, tcp)
        return order

    def _start_probe(self, index: int, query: Query, data: bytes, tcp: bool) -> None:
        """Ask a down upstream the same question under its own ID and port, beside the
        query: its reply only tells whether the upstream is back."""
        async def probe() -> None:
            upstreams = self.tcp_upstreams if tcp and self.tcp_upstreams else self.upstreams
            if index >= len(upstreams):
                return
            reply = await self._try_one(upstreams[index], query, data, tcp, self.timeout)
            if reply is None:
                self.health.failed(index)
            else:
                self.health.succeeded(index)

        task = asyncio.get_running_loop().create_task(probe())
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _try_one(self, upstream: Upstream, query: Query, data: bytes, tcp: bool,
                       timeout: float) -> bytes | None:
        """One exchange under a fresh random ID: the matching reply, or None (timeout, a dead
        port, a closed connection)."""
        upstream_id = self.ids.next()
        outgoing = struct.pack("!H", upstream_id) + data[2:]
        exchange = exchange_tcp if tcp else exchange_udp
        stats = self.stats[upstream]
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                reply = await exchange(self._open_socket, upstream, outgoing, query, upstream_id)
            stats.latency.observe(time.monotonic() - started)
            return reply
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as error:
            self.try_failed(upstream, query, error)
            return None

    def try_failed(self, upstream: Upstream, query: Query, error: Exception) -> None:
        """Count and log a try that got no reply: a timeout or a socket error."""
        timed_out = isinstance(error, TimeoutError)
        self.stats[upstream].outcomes["timeout" if timed_out else "error"] += 1
        log.info("upstream %s failed for %s: %s", upstream, query.qname,
                 type(error).__name__ if timed_out else error)


_DGRAM_NONBLOCK = socket.SOCK_DGRAM | socket.SOCK_NONBLOCK  # no ioctl(FIONBIO) per try


class UdpForward:
    """One query forwarded over UDP as callbacks on the loop (a socket in the forwarder's
    ReplyPoller and a timer per try, no task, no future): the same tries, checks and budget
    as Forwarder._try_each."""

    __slots__ = ("_deadline", "_deliver", "_fd", "_forwarder", "_index", "_order", "_poller",
                 "_sent_at", "_sock", "_timer", "_upstream_id", "data", "query")

    def __init__(self, forwarder: Forwarder, poller: ReplyPoller, query: Query, data: bytes,
                 deliver: Callable[[bytes | None], None]) -> None:
        self._forwarder = forwarder
        self._poller = poller
        self.query, self.data = query, data
        self._deliver = deliver
        self._deadline = time.monotonic() + forwarder.budget
        self._order: list[int] = []
        self._index = -1
        # The C socket, not socket.socket: its Python-level __init__ and close cost a try more.
        self._sock: _socket.socket | None = None
        self._fd = -1
        self._timer: Deadline | None = None  # in the poller's heap
        self._upstream_id = 0
        self._sent_at = 0.0

    def start(self) -> None:
        try:
            self._order = self._forwarder.plan(self.query, self.data, False)
            self._order.reverse()  # popped from the end
            self._try_next()
        except Exception:
            self._failed()

    def _try_next(self) -> None:
        while self._order:
            self._index = self._order.pop()
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._send(min(self._forwarder.timeout, remaining)):
                return
        self._finish(None)

    def _send(self, timeout: float) -> bool:
        forwarder = self._forwarder
        upstream = forwarder.upstreams[self._index]
        self._upstream_id = upstream_id = forwarder.ids.next()
        family = socket.AF_INET6 if ":" in upstream.host else socket.AF_INET
        sock: _socket.socket | None = None
        try:  # a fresh socket, so a fresh ephemeral port; connected: others' datagrams dropped
            sock = _socket.socket(family, _DGRAM_NONBLOCK)
            sock.connect(upstream)
            sock.send(upstream_id.to_bytes(2, "big") + self.data[2:])
        except OSError as error:  # no socket left, no route, or the port is known closed
            if sock is not None:
                sock.close()
            self._log_failure(error)
            return False
        self._sock, self._fd = sock, sock.fileno()
        self._poller.watch(self._fd, self._readable)
        self._sent_at = now = time.monotonic()
        self._timer = self._poller.expire_at(now + timeout, self._timed_out)
        return True

    def _failed(self) -> None:
        """Never silence: an unexpected error ends the forward with SERVFAIL and a log line."""
        log.exception("forwarding %s failed unexpectedly", self.query.qname)
        self._order.clear()
        self._end_try()
        self._finish(None)

    def _readable(self) -> None:
        """Read the try's socket: relay the matching reply (or try the next upstream after
        SERVFAIL or REFUSED), drop anything else as a spoof and keep waiting."""
        try:
            sock = self._sock
            forwarder = self._forwarder
            while sock is not None:
                try:
                    reply = sock.recv(65535)
                except BlockingIOError:
                    return
                except OSError as error:  # ICMP port unreachable: nothing listens there
                    self._end_try()
                    self._log_failure(error)
                    self._try_next()
                    return
                stats = forwarder.stats[forwarder.upstreams[self._index]]
                if not matches(reply, self.query, self._upstream_id):
                    stats.outcomes["spoof_dropped"] += 1
                    continue
                stats.latency.observe(time.monotonic() - self._sent_at)
                self._end_try()
                relayed = forwarder.relayed(self._index, self.query, self.data, reply, False)
                if relayed is None:
                    self._try_next()
                else:
                    self._finish(relayed)
                return
        except Exception:
            self._failed()

    def _timed_out(self) -> None:
        self._timer = None
        try:
            self._end_try()
            self._log_failure(TimeoutError())
            self._try_next()
        except Exception:
            self._failed()

    def _log_failure(self, error: Exception) -> None:
        forwarder = self._forwarder
        forwarder.health.failed(self._index)
        forwarder.try_failed(forwarder.upstreams[self._index], self.query, error)

    def _end_try(self) -> None:
        sock = self._sock  # a try in flight has both a socket and a time limit (or had)
        if sock is not None:
            self._poller.end(self._fd, self._timer)
            self._sock = self._timer = None
            sock.close()  # which also takes it out of the poller's epoll

    def _finish(self, reply: bytes | None) -> None:
        deliver, self._deliver = self._deliver, _delivered
        self._forwarder.finished(self)
        deliver(reply)

    def cancel(self) -> None:
        """Stop without replying (the server is closing)."""
        self._order.clear()
        self._end_try()
        self._forwarder.finished(self)


def _delivered(reply: bytes | None) -> None:
    """A forward answers its client once; anything after that goes nowhere."""
