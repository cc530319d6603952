# The TCP shell around the handler (docs/failures.md, RFC 7766): 2-byte framing, replies in query
# order (forwards included), an idle timeout, connection caps per source and in total, and
# back-pressure. It never raises into the loop. Rules:
# - Idle means no complete query for `idle_timeout` seconds (Docker's read deadline covers a
#   whole message): a client trickling one byte at a time, or holding half a frame, is closed
#   like a silent one. A connection with replies still to come is not idle.
# - A client that does not read its replies is not read either: once the transport's write
#   buffer passes its high-water mark, or MAX_PENDING replies wait in order, we stop taking
#   queries (the rest stays in the framer) and pause reading until it catches up. Memory per
#   connection: one read, one frame, the write buffer, MAX_PENDING replies.
# - At the total cap, a new connection closes the one idle the longest (no reply pending or
#   unsent) to get in, as Unbound and BIND reclaim TCP slots; at its client's own cap it closes
#   that client's longest-idle connection instead, so a client holding many idle connections
#   cannot lock itself out (docs/failures.md). Only when the connections it would take over
#   are all busy is the new one refused.
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterator
from typing import cast

from resolver.framing import TcpFramer, frame
from resolver.handler import Forward, Outcome
from resolver.transport import LogEvery, Resolution, client_key

log = logging.getLogger(__name__)
_CAP_REFUSALS = LogEvery(log)

# Pipelined queries whose replies may wait in order behind a slow forward before we stop
# reading (RFC 7766 §6.2.1.1 lets servers limit this); Unbound's default is in the same range.
MAX_PENDING = 128


class TcpClients:
    """The live connections of one server, least recently active first, and their counts per
    source: admission, the caps and slot reclaim."""

    def __init__(self, max_total: int, max_per_source: int) -> None:
        self.max_total = max_total
        self.max_per_source = max_per_source
        self._by_activity: dict[TcpConnection, None] = {}  # insertion order = activity order
        self._per_source: dict[str, int] = {}
        self.accepted = 0  # connections let in, and refused at a cap (docs/operations.md)
        self.refused = 0

    def __len__(self) -> int:
        return len(self._by_activity)

    def __iter__(self) -> Iterator[TcpConnection]:
        return iter(list(self._by_activity))

    def admit(self, connection: TcpConnection) -> bool:
        source = connection.source
        if self._per_source.get(source, 0) >= self.max_per_source:
            own = (c for c in self._by_activity if c.source == source and c.is_idle())
            if not self._reclaim(next(own, None), source, "per-client"):
                self.refused += 1
                return False
        elif len(self._by_activity) >= self.max_total:
            idle = (c for c in self._by_activity if c.is_idle())
            if not self._reclaim(next(idle, None), source, "total"):
                self.refused += 1
                return False
        self._by_activity[connection] = None
        self._per_source[source] = self._per_source.get(source, 0) + 1
        self.accepted += 1
        return True

    def _reclaim(self, victim: TcpConnection | None, source: str, cap: str) -> bool:
        """Close `victim` (the longest idle) to make room for a connection from `source`."""
        if victim is None:
            return False
        log.debug("tcp %s cap: closing an idle connection from %s for one from %s", cap,
                  victim.source, source)
        self.remove(victim)
        victim.close()
        return True

    def touch(self, connection: TcpConnection) -> None:
        if connection in self._by_activity:
            del self._by_activity[connection]
            self._by_activity[connection] = None

    def remove(self, connection: TcpConnection) -> None:
        if connection not in self._by_activity:
            return
        del self._by_activity[connection]
        left = self._per_source[connection.source] - 1
        if left:
            self._per_source[connection.source] = left
        else:
            del self._per_source[connection.source]


class TcpConnection(asyncio.Protocol):
    """One client connection: frames in, replies out in the order the queries came."""

    def __init__(self, resolution: Resolution, clients: TcpClients, idle_timeout: float) -> None:
        self._resolution = resolution
        self._clients = clients
        self._idle_timeout = idle_timeout
        self._framer = TcpFramer()
        self._pending: deque[asyncio.Future[bytes] | bytes | None] = deque()
        self._transport: asyncio.Transport | None = None
        self.source = ""
        self._idle: asyncio.TimerHandle | None = None
        self._writing_paused = False
        self._reading = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport does not subclass asyncio.Transport either.
        self._transport = cast(asyncio.Transport, transport)
        self.source = self.client_of(transport.get_extra_info("peername"))
        if not self._clients.admit(self):
            _CAP_REFUSALS.warning("tcp connection from %s refused: connection cap", self.source)
            self._transport.abort()
            self._transport = None
            return
        self._arm_idle()

    def client_of(self, peer: tuple[object, ...] | None) -> str:
        """Who is asking, for views and caps: the peer address (takeover overrides it)."""
        return client_key(str(peer[0])) if peer else ""

    def data_received(self, data: bytes) -> None:
        self._framer.push(data)
        self._pump()

    def _pump(self) -> None:
        """Answer complete queries while the client keeps up; stop reading when it does not."""
        self._flush()
        while self._transport is not None and not self._held():
            message = self._framer.pop()
            if message is None:
                break
            self._answer(message)
            self._flush()
        self._set_reading(not self._held())

    def _held(self) -> bool:
        return self._writing_paused or len(self._pending) >= MAX_PENDING

    def _answer(self, message: bytes) -> None:
        self._arm_idle()
        self._clients.touch(self)
        handler = self._resolution.handler
        with handler.lock:  # the UDP receive thread answers beside us (resolver/udp_batch.py)
            outcome: Outcome = handler.handle(message, self.source, True)
        if isinstance(outcome, Forward):
            future = asyncio.ensure_future(
                self._resolution.forward(outcome, tcp=True, source=self.source))
            future.add_done_callback(lambda _: self._pump())
            self._pending.append(future)
        else:
            self._pending.append(outcome)

    def _flush(self) -> None:
        transport = self._transport
        while self._pending and transport is not None and not transport.is_closing():
            head = self._pending[0]
            if isinstance(head, asyncio.Future):
                if not head.done():
                    return
                reply = None if head.cancelled() or head.exception() else head.result()
            else:
                reply = head
            self._pending.popleft()
            if reply is not None:
                transport.write(frame(reply))

    def _set_reading(self, reading: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or reading == self._reading:
            return
        self._reading = reading
        if reading:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def is_idle(self) -> bool:
        """No reply to come and none unsent: closing it loses the client at most a query it
        has not finished sending."""
        transport = self._transport
        return not self._pending and (transport is None or transport.get_write_buffer_size() == 0)

    @property
    def reading_paused(self) -> bool:
        return not self._reading

    @property
    def buffered(self) -> int:
        """Bytes held for this client: queries not yet taken, replies not yet sent."""
        transport = self._transport
        written = transport.get_write_buffer_size() if transport is not None else 0
        return self._framer.pending + written

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(self._idle_timeout, self._on_idle)

    def _on_idle(self) -> None:
        transport = self._transport
        if transport is None:
            return
        if transport.is_closing():
            transport.abort()  # closed an idle period ago and still not reading what we wrote
        elif self._pending and not self._writing_paused:
            self._arm_idle()  # still answering: idle means the client is silent *and* served
        else:
            transport.close()  # what is buffered still goes out if the client reads it
            self._arm_idle()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        for item in self._pending:
            if isinstance(item, asyncio.Future):
                item.cancel()
        self._pending.clear()
        self._clients.remove(self)
        self._transport = None
