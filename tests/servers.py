# The one way tests run the server in-process: `serving` starts a Server on 127.0.0.1, port 0
# (UDP and TCP on the same free number), over a given name table and Config, and closes it
# afterwards. The `serve` fixture (tests/conftest.py) wraps it so that a test needs no
# try/finally, and runs each test that uses it on asyncio's loop and on uvloop, and with UDP
# read by the receive thread and by the event loop (--udp-io). Also the
# small helpers to build a Config that forwards to fake upstreams and to reach the server.
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Protocol

import dns.message

from resolver.config import Config
from resolver.exchange import Upstream
from resolver.server import Server
from resolver.table import NameTable
from tests.fakes import FakeUpstream

LOOPBACK_ANY_PORT = (("127.0.0.1", 0),)


def loopback_config(*upstreams: FakeUpstream, **fields: Any) -> Config:
    """A Config forwarding to `upstreams` in order (none: no forwarding), other fields as given
    or their defaults. Where it listens is the server fixture's business."""
    return Config(upstreams=tuple(Upstream(fake.host, fake.port) for fake in upstreams),
                  **fields)


@asynccontextmanager
async def serving(table: NameTable, config: Config | None = None) -> AsyncIterator[Server]:
    """A Server over `table`, listening on loopback port 0 whatever `config` says; closed on
    exit. Server.start already picks another port when TCP finds the UDP one taken."""
    server = Server(replace(config or Config(), listen=LOOPBACK_ANY_PORT), table)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


class Serve(Protocol):
    """The `serve` fixture: start a server as `serving` does; it is closed after the test."""

    async def __call__(self, table: NameTable, config: Config | None = None) -> Server: ...


def port(server: Server) -> int:
    return server.addresses[0][1]


def addresses(reply: dns.message.Message) -> list[str]:
    """The answer section's records as text, in order."""
    return [rr.to_text() for rrset in reply.answer for rr in rrset]
