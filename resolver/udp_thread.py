# PROTOTYPE: UDP receive threads (variants picked by SCOPEDNS_UDP_VARIANT for measurement).
from __future__ import annotations

import asyncio
import logging
import os
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resolver.handler import Forward
from resolver.mmsg import MSG_DONTWAIT, MSG_WAITFORONE, Batch
from resolver.transport import Resolution, client_key

log = logging.getLogger(__name__)

VARIANT = os.environ.get("SCOPEDNS_UDP_VARIANT", "block-mmsg")


def decode_name(raw: bytes | int) -> tuple[str, tuple[Any, ...]]:
    if isinstance(raw, int):
        raw = raw.to_bytes(8, "little")
    family = int.from_bytes(raw[:2], "little")
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET:
        host = socket.inet_ntop(socket.AF_INET, raw[4:8])
        return host, (host, port)
    host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
    scope = int.from_bytes(raw[24:28], "little")
    flow = int.from_bytes(raw[4:8], "big")
    return client_key(host), (host, port, flow, scope)


@dataclass
class Listener:
    sock: socket.socket
    resolution: Resolution
    source: Callable[[], str] | None = None


class Receiver:
    def __init__(self, loop: asyncio.AbstractEventLoop, guard: threading.Lock,
                 variant: str) -> None:
        global VARIANT
        VARIANT = variant
        self._loop = loop
        self._guard = guard
        self._threads: list[threading.Thread] = []
        self._listeners: dict[int, Listener] = {}
        self._names: dict[bytes | int, tuple[str, tuple[Any, ...]]] = {}
        self._stopping = False
        self._epoll: Any = None
        self._wake_r = self._wake_w = -1

    def add(self, listener: Listener) -> None:
        fd = listener.sock.fileno()
        self._listeners[fd] = listener
        if VARIANT.startswith("epoll"):
            if self._epoll is None:
                self._epoll = select.epoll()
                self._wake_r, self._wake_w = os.pipe()
                self._epoll.register(self._wake_r, select.EPOLLIN)
                self._start(self._run_epoll)
            listener.sock.setblocking(False)
            self._epoll.register(fd, select.EPOLLIN)
        else:
            listener.sock.setblocking(True)
            self._start(lambda: self._run_blocking(listener))

    def _start(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name="scopedns-udp", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stopping = True
        if self._epoll is not None:
            os.write(self._wake_w, b"x")
        else:
            for listener in self._listeners.values():
                try:
                    listener.sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        for listener in self._listeners.values():
            listener.sock.close()

    def _address(self, raw: bytes | int) -> tuple[str, tuple[Any, ...]]:
        found = self._names.get(raw)
        if found is None:
            if len(self._names) > 65536:
                self._names.clear()
            found = self._names[raw] = decode_name(raw)
        return found

    def _run_blocking(self, listener: Listener) -> None:
        if VARIANT == "block-recvfrom":
            return self._run_blocking_recvfrom(listener)
        batch = Batch()
        fd = listener.sock.fileno()
        handoff = VARIANT == "handoff"
        while not self._stopping:
            try:
                got = batch.receive(fd, MSG_WAITFORONE)
            except OSError as error:
                log.warning("udp receive: %s", error)
                continue
            if self._stopping:
                return
            if handoff:
                items = [(batch.datagram(i), batch.name(i)) for i in range(got)]
                self._loop.call_soon_threadsafe(self._answer_on_loop, listener, items)
                continue
            self._answer_batch(listener, batch, got, fd)

    def _answer_batch(self, listener: Listener, batch: Batch, got: int, fd: int) -> None:
        handle = listener.resolution.handler.handle
        forwards = []
        names = self._names
        with self._guard:
            for i, (data, raw) in enumerate(batch.received(got)):
                found = names.get(raw)
                if found is None:
                    found = self._address(raw)
                source, addr = found
                if listener.source is not None:
                    source = listener.source()
                outcome = handle(data, source, False)
                if outcome.__class__ is bytes:
                    if not batch.queue(i, outcome):  # type: ignore[arg-type]
                        self._sendto(listener.sock, outcome, addr)  # type: ignore[arg-type]
                elif outcome is not None:
                    forwards.append((outcome, addr))
        batch.flush(fd)
        if forwards:
            self._loop.call_soon_threadsafe(self._forward_all, listener, forwards)

    def _answer_on_loop(self, listener: Listener, items: list[tuple[bytes, bytes]]) -> None:
        handle = listener.resolution.handler.handle
        sock = listener.sock
        for data, raw in items:
            source, addr = self._address(raw)
            outcome = handle(data, source, False)
            if isinstance(outcome, bytes):
                self._sendto(sock, outcome, addr)
            elif outcome is not None:
                self._forward_all(listener, [(outcome, addr)])

    def _run_blocking_recvfrom(self, listener: Listener) -> None:
        sock = listener.sock
        handle = listener.resolution.handler.handle
        guard = self._guard
        forward_all = self._forward_all
        while not self._stopping:
            try:
                data, addr = sock.recvfrom(65536)
            except OSError:
                continue
            if self._stopping:
                return
            with guard:
                source = addr[0] if len(addr) == 2 else client_key(addr[0])
                outcome = handle(data, source, False)
            if isinstance(outcome, bytes):
                try:
                    sock.sendto(outcome, MSG_DONTWAIT, addr)
                except OSError:
                    pass
            elif outcome is not None:
                self._loop.call_soon_threadsafe(forward_all, listener, [(outcome, addr)])

    def _run_epoll(self) -> None:
        batch = Batch()
        poll = self._epoll.poll
        listeners = self._listeners
        mmsg = VARIANT == "epoll-mmsg"
        while not self._stopping:
            for fd, _ in poll():
                listener = listeners.get(fd)
                if listener is None:
                    continue
                if mmsg:
                    got = batch.receive(fd, MSG_DONTWAIT)
                    if got:
                        self._answer_batch(listener, batch, got, fd)
                else:
                    self._one(listener)

    def _one(self, listener: Listener) -> None:
        sock = listener.sock
        try:
            data, addr = sock.recvfrom(65536, MSG_DONTWAIT)
        except OSError:
            return
        with self._guard:
            source = addr[0] if len(addr) == 2 else client_key(addr[0])
            outcome = listener.resolution.handler.handle(data, source, False)
        if isinstance(outcome, bytes):
            self._sendto(sock, outcome, addr)
        elif outcome is not None:
            self._loop.call_soon_threadsafe(self._forward_all, listener, [(outcome, addr)])

    @staticmethod
    def _sendto(sock: socket.socket, reply: bytes, addr: tuple[Any, ...]) -> None:
        try:
            sock.sendto(reply, MSG_DONTWAIT, addr)
        except OSError as error:
            log.debug("udp send: %s", error)

    def _forward_all(self, listener: Listener, items: list[tuple[Forward, tuple[Any, ...]]]
                     ) -> None:
        sock = listener.sock
        for outcome, addr in items:
            listener.resolution.forward_udp(
                outcome, lambda reply, addr=addr: self._sendto(sock, reply, addr), addr[0])
