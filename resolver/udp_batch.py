# `--udp-io batch` (docs/performance.md): one thread reads every UDP listener, the --listen
# addresses and every taken-over container's, over one epoll: per ready socket one recvmmsg
# takes what is queued (up to mmsg.BATCH datagrams), the handler answers them under its lock,
# and one sendmmsg sends the replies. The event loop is not woken per datagram; it sees only
# the queries to forward, handed over once per batch (call_soon_threadsafe), and it sends
# their replies itself when they come back. It moves bytes and nothing else, and never raises:
# errors are logged (rate-limited) and the thread goes on.
#
# Threads: add() and remove() are called on the loop; the thread holds `_registry` while it
# answers, so a socket is never closed under it. The handler's lock (resolver/handler.py)
# keeps its caches, rate limiter and counters whole against the loop's TCP answers, counted
# forwards and table changes.
from __future__ import annotations

import asyncio
import logging
import os
import select
import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from resolver import mmsg
from resolver.handler import Forward, Handler
from resolver.transport import LogEvery, Resolution, client_key

log = logging.getLogger(__name__)

# Senders remembered with their decoded address (the dictionary is cleared past this).
MAX_SENDERS = 65_536

Address = tuple[Any, ...]


class Asker(Protocol):
    """Who asks on a takeover listener, whatever the packet's source (resolver/takeover.py)."""

    source: str


@dataclass(eq=False)
class _Listener:
    sock: socket.socket
    fd: int
    resolution: Resolution
    asker: Asker | None
    handler: Handler = field(init=False)
    closed: bool = False

    def __post_init__(self) -> None:
        self.handler = self.resolution.handler


class BatchReceiver:
    """The receive thread and the sockets it serves: add() starts it, close() stops it; both
    on the event loop's thread."""

    def __init__(self) -> None:
        self._listeners: dict[int, _Listener] = {}
        self._registry = threading.Lock()
        self._senders: dict[mmsg.Sender, tuple[str, Address]] = {}
        self._errors = LogEvery(log)
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Made by the first add(): the loop the forwards go to, the epoll and its wake-up.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._epoll: Any = None
        self._wake = -1

    def add(self, sock: socket.socket, resolution: Resolution,
            asker: Asker | None = None) -> Callable[[], None]:
        """Serve `sock` from now on; the returned callable stops serving and closes it."""
        if self._stopping:
            raise RuntimeError("the UDP receive thread is stopped")
        if self._thread is None:
            self._start()
        sock.setblocking(False)
        listener = _Listener(sock, sock.fileno(), resolution, asker)
        with self._registry:
            self._listeners[listener.fd] = listener
            self._epoll.register(listener.fd, select.EPOLLIN)
        return partial(self._remove, listener)

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._epoll = select.epoll()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self._thread = threading.Thread(target=self._run, args=(self._epoll,),
                                        name="scopedns-udp", daemon=True)
        self._thread.start()

    def _remove(self, listener: _Listener) -> None:
        with self._registry:
            if listener.closed:
                return
            listener.closed = True
            if self._listeners.get(listener.fd) is listener:
                del self._listeners[listener.fd]
                with suppress(OSError, ValueError):
                    self._epoll.unregister(listener.fd)
            listener.sock.close()

    def close(self) -> None:
        """Stop the thread (it is gone when this returns) and close every socket still here."""
        if self._stopping:
            return
        self._stopping = True
        if self._thread is not None:
            os.eventfd_write(self._wake, 1)
            self._thread.join()
        for listener in list(self._listeners.values()):
            self._remove(listener)
        if self._epoll is not None:
            self._epoll.close()
            os.close(self._wake)

    # ----- the receive thread --------------------------------------------------------------

    def _run(self, epoll: Any) -> None:
        batch = mmsg.Batch()
        poll = epoll.poll
        while not self._stopping:
            try:
                events = poll()
            except InterruptedError:
                continue
            with self._registry:
                for fd, _ in events:
                    listener = self._listeners.get(fd)
                    if listener is not None:
                        self._serve(listener, batch)

    def _serve(self, listener: _Listener, batch: mmsg.Batch) -> None:
        try:
            if not batch.receive(listener.fd):
                return
            forwards = self._answer(listener, batch)
            lost = batch.send(listener.fd)
            if lost:
                log.debug("udp: %d replies not sent (socket buffer full)", lost)
        except OSError as error:
            self._errors.warning("udp receive on %s: %s", _name(listener.sock), error)
            return
        except Exception:  # never let the thread die: one line, and go on
            log.exception("udp receive thread: unexpected error")
            return
        if forwards and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._forward, listener, forwards)
            except RuntimeError:  # the loop is closed: the server is going
                log.debug("udp: %d queries not forwarded: the loop is closed", len(forwards))

    def _answer(self, listener: _Listener, batch: mmsg.Batch
                ) -> list[tuple[Forward, Address, str]]:
        """Each datagram of the batch through the handler; replies queued in `batch`, the
        queries to forward returned."""
        handle, asker, senders = listener.handler.handle, listener.asker, self._senders
        forwards: list[tuple[Forward, Address, str]] = []
        with listener.handler.lock:
            for i, (data, sender) in enumerate(batch.received()):
                known = senders.get(sender)
                if known is None:
                    known = self._sender(sender)
                source, address = known
                if asker is not None:
                    source = asker.source
                outcome = handle(data, source, False)
                if outcome.__class__ is bytes:
                    if not batch.reply(i, outcome):
                        _send(listener, outcome, address)
                elif outcome is not None:
                    forwards.append((outcome, address, source))  # type: ignore[arg-type]
        return forwards

    def _sender(self, sender: mmsg.Sender) -> tuple[str, Address]:
        host, address = mmsg.sender_address(sender)
        if len(self._senders) >= MAX_SENDERS:
            self._senders.clear()
        known = self._senders[sender] = (client_key(host), address)
        return known

    # ----- on the event loop ---------------------------------------------------------------

    def _forward(self, listener: _Listener, forwards: list[tuple[Forward, Address, str]]
                 ) -> None:
        for request, address, source in forwards:
            listener.resolution.forward_udp(request, partial(_send, listener, address=address),
                                            source)


def _send(listener: _Listener, reply: bytes, address: Address) -> None:
    """One reply by sendto, never waiting: a reply too big for the batch, or a forwarded one
    (sent from the loop; dropped when the listener has closed meanwhile)."""
    if listener.closed:
        return
    try:
        listener.sock.sendto(reply, socket.MSG_DONTWAIT, address)
    except OSError as error:
        log.debug("udp: reply to %s not sent: %s", address[0], error)


def _name(sock: socket.socket) -> str:
    with suppress(OSError):
        host, port = sock.getsockname()[:2]
        return f"{host}:{port}"
    return "a closed socket"
