# `serve --takeover` as a state source (resolver/sources.py, docs/takeover.md): the Docker
# watcher with the takeover manager (watchers/takeover.py) beside it, and the manager's metrics
# on the server's registry (docs/operations.md).
from __future__ import annotations

import asyncio

from resolver.config import Config
from resolver.metrics import Metrics
from resolver.sources import StateSource
from resolver.stats import QueryStats
from resolver.table import NameTable
from resolver.udp_batch import BatchReceiver
from watchers.takeover import LATENCY_BUCKETS, TakeoverManager


class WithTakeover:
    """A state source with the takeover manager beside it (resolver/sources.py): both run
    until cancelled; a TaskGroup, not gather, so that cancelling waits for the hand-back."""

    def __init__(self, source: StateSource, table: NameTable, config: Config,
                 metrics: Metrics | None = None, stats: QueryStats | None = None,
                 udp_receiver: BatchReceiver | None = None) -> None:
        self._source = source
        self._manager = TakeoverManager(table, config, stats=stats, udp_receiver=udp_receiver)
        if metrics is not None:  # docs/operations.md: read at scrape time
            manager = self._manager
            metrics.gauge("takeover_containers", "Containers whose 127.0.0.11 scopedns answers "
                          "now (--takeover)", lambda: float(len(manager.diversions)))
            manager.outcomes = metrics.counter("takeover", "Takeovers by outcome: taken, "
                                               "failed (left to Docker), handed_back",
                                               labels=("outcome",))
            manager.latency = metrics.histogram(
                "takeover_latency_seconds", "From the engine event a takeover acted on (network "
                "connect or container start) to the diversion in place", LATENCY_BUCKETS)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._source.run())
            group.create_task(self._manager.run())

    def reload(self) -> None:
        self._source.reload()

    async def close(self) -> None:
        await self._source.close()
