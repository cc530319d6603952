# A fake Docker engine for tests: the few Engine API endpoints a full sync reads (/version,
# /info, /networks, /containers/json, /containers/{id}/json) and a silent /events stream, over
# a unix socket (aiohttp), serving recorded inspect JSON. Containers whose State.Running is not
# true are inspectable but not listed, as the engine does.
from __future__ import annotations

import asyncio
import contextlib
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web


class FakeEngine:
    """/version, /info, /networks, /containers/json, /containers/{id}/json and a silent
    /events stream, over a unix socket, from recorded inspect JSON."""

    def __init__(self, networks: list[dict[str, Any]], containers: list[dict[str, Any]]) -> None:
        self._networks = networks
        self._containers = {c["Id"]: c for c in containers}
        self._closing = asyncio.Event()
        self._dir = tempfile.mkdtemp(prefix="ssnap-")
        self.url = f"unix://{self._dir}/engine.sock"
        app = web.Application()
        app.router.add_get("/version", self._version)
        app.router.add_get("/{v}/info", self._info)
        app.router.add_get("/{v}/networks", self._list_networks)
        app.router.add_get("/{v}/containers/json", self._list)
        app.router.add_get("/{v}/containers/{id}/json", self._inspect)
        app.router.add_get("/{v}/events", self._events)
        self._runner = web.AppRunner(app)

    async def start(self) -> FakeEngine:
        await self._runner.setup()
        await web.UnixSite(self._runner, self.url.removeprefix("unix://")).start()
        return self

    async def close(self) -> None:
        self._closing.set()
        await self._runner.cleanup()
        with contextlib.suppress(OSError):
            Path(self.url.removeprefix("unix://")).unlink()
            Path(self._dir).rmdir()

    async def _version(self, _: web.Request) -> web.Response:
        return web.json_response({"ApiVersion": "1.41"})

    async def _info(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"SystemTime": datetime.now(UTC).isoformat().replace("+00:00", "Z")})

    async def _list_networks(self, _: web.Request) -> web.Response:
        return web.json_response(self._networks)

    async def _list(self, _: web.Request) -> web.Response:
        return web.json_response([{"Id": cid} for cid, c in self._containers.items()
                                  if c["State"]["Running"]])

    async def _inspect(self, request: web.Request) -> web.Response:
        found = self._containers.get(request.match_info["id"])
        if found is None:
            return web.json_response({"message": "No such container"}, status=404)
        return web.json_response(found)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await self._closing.wait()
        return response
