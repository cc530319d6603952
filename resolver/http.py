# The --http listener (docs/operations.md), an aiohttp.web shell: /metrics (Prometheus text
# through prometheus_client), /healthz (the event loop answers), /readyz (first full sync done;
# how stale the table is while the engine is away) and /v1/clients/<address> (resolver/explain.py).
# It reveals the table: bind it to loopback or a management network only.
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily

from resolver.explain import StoppedContainer, explain
from resolver.logs import QueryLog
from resolver.metrics import (
    PREFIX,
    Metrics,
    build_info,
    engine_families,
    forward_families,
    query_families,
    table_families,
    tcp_families,
)
from resolver.model import IPAddress
from resolver.server import ListenError, Server
from resolver.stats import EngineStats

log = logging.getLogger(__name__)

# Stopped containers attached to any of these network ids (explain asks the engine).
StoppedLookup = Callable[[Sequence[str]], Awaitable[Sequence[StoppedContainer]]]
# The engine's answer about stopped containers may take this long (a busy engine) before
# explain goes without them, and says so.
STOPPED_LOOKUP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Readiness:
    ready: bool
    body: str


def readiness(synced: bool, engine: EngineStats | None, source: str, now: float) -> Readiness:
    """/readyz: not ready until the first full sync; then ready, saying how stale the table may
    be while the engine is away."""
    if not synced:
        reason = f"; last error: {engine.last_error}" if engine and engine.last_error else ""
        return Readiness(False, f"not ready: waiting for the first full sync with {source}"
                         f"{reason}\n")
    if engine is None:
        return Readiness(True, f"ready: serving {source}\n")
    if engine.connected or engine.lost_at is None:
        since = ("" if engine.last_sync is None
                 else f"; last full sync {now - engine.last_sync:.0f}s ago")
        return Readiness(True, f"ready: following {source}{since}\n")
    away = now - engine.lost_at
    return Readiness(True, f"ready (stale): {source} unreachable for {away:.1f}s "
                     f"({engine.last_error}); answering from the table as it was then: "
                     f"changes since then are not seen\n")


def server_metrics(server: Server, engine: EngineStats | None) -> Metrics:
    """The core metric families of one server and its state source, added to those features
    registered in server.metrics."""
    metrics = server.metrics
    metrics.add(build_info)
    stats = server.handler.stats
    if stats is not None:
        metrics.add(lambda: query_families(stats, server.handler.lock))
    metrics.add(lambda: forward_families(server.resolution.forwarder))
    metrics.add(lambda: table_families(server.table))
    metrics.add(lambda: tcp_families(server.tcp_clients))
    if engine is not None:
        metrics.add(lambda: engine_families(engine, engine.clock))
    return metrics


class HttpServer:
    """The --http endpoints over one Server."""

    def __init__(self, server: Server, metrics: Metrics, engine: EngineStats | None,
                 source: str, stopped: StoppedLookup | None = None) -> None:
        self.server = server
        self.metrics = metrics
        self.engine = engine
        self.source = source
        self.stopped = stopped
        self._registry = metrics.registry()
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/v1/clients/{address}", self._client)
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as error:
            await self.close()
            raise ListenError(f"cannot listen on --http {host}:{port}: "
                              f"{error.strerror or error}") from None
        bound = [s.getsockname()[1] for s in getattr(site._server, "sockets", None) or ()]
        self.address = (host, bound[0] if bound else port)
        log.info("http: /metrics /healthz /readyz /v1/clients on %s port %d", *self.address)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")  # answered at all: the event loop is turning

    async def _readyz(self, request: web.Request) -> web.Response:
        state = readiness(self.server.table.synced, self.engine, self.source, time.time())
        return web.Response(status=200 if state.ready else 503, text=state.body)

    async def _client(self, request: web.Request) -> web.Response:
        text = request.match_info["address"]
        try:
            address = ip_address(text)
        except ValueError:
            return web.json_response({"error": f"not an IP address: {text!r}"}, status=400)
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        name = request.query.get("name")
        stopped, unknown = await self._stopped(address) if name else ((), "")
        result = explain(self.server.table, self.server.policy, address, name, stopped)
        if unknown:
            result["stopped_unknown"] = unknown
        return web.json_response(result)

    async def _stopped(self, address: IPAddress) -> tuple[Sequence[StoppedContainer], str]:
        """Stopped containers on the networks this client sees, or why they are unknown."""
        if self.stopped is None:
            return (), f"{self.source} has no stopped containers to show"
        view = self.server.table.view_for(address)
        networks = [entry.records.network.id for entry in view.entries] if view else []
        try:
            return await asyncio.wait_for(self.stopped(networks), STOPPED_LOOKUP_TIMEOUT), ""
        except Exception as error:  # the engine is away or slow: explain without them
            reason = f"stopped containers unknown: {type(error).__name__} {error}".strip()
            log.info("explain: %s", reason)
            return (), reason


async def start_http(server: Server, engine: EngineStats | None, source: str,
                     stopped: StoppedLookup | None = None) -> HttpServer | None:
    """--http (and --log-queries, whose suppressed count is a metric): wire and start what
    the configuration asks for."""
    config = server.config
    metrics = server_metrics(server, engine)
    stats = server.handler.stats
    if config.log_queries and stats is not None:
        query_log = QueryLog(server.table)
        stats.observers.append(query_log)
        metrics.add(lambda: [CounterMetricFamily(
            PREFIX + "query_log_suppressed", "Query log lines held back by its rate limit",
            value=query_log.suppressed)])
    if config.http is None:
        return None
    http = HttpServer(server, metrics, engine, source, stopped)
    await http.start(*config.http)
    return http
