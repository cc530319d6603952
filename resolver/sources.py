# State sources: what feeds the name table. One small protocol that the Docker watcher
# (watchers/docker.py) and the snapshot file (watchers/snapshot.py) implement, and a cluster
# source will, and the one function that picks a source from the options. Part of the
# composition root: the only place in resolver/ that imports watchers/ (docs/design.md).
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

from resolver.config import Config
from resolver.explain import StoppedContainer
from resolver.metrics import Metrics
from resolver.stats import EngineStats, QueryStats
from resolver.table import NameTable
from resolver.udp_batch import BatchReceiver


class StateSource(Protocol):
    """Keeps a NameTable (given at construction) equal to some outside state."""

    async def run(self) -> None:
        """Feed the table until cancelled; never raises but CancelledError."""

    def reload(self) -> None:
        """Re-read the state (SIGHUP); safe to call from a signal handler."""

    async def close(self) -> None:
        """Release what the source holds (connections). Idempotent."""


class SourceError(Exception):
    """The source cannot start (e.g. an unusable snapshot file); one line, naming it."""


def open_source(config: Config, table: NameTable, engine_stats: EngineStats | None = None,
                metrics: Metrics | None = None, query_stats: QueryStats | None = None,
                udp_receiver: BatchReceiver | None = None) -> StateSource:
    """The snapshot file if one is given, else the Docker engine (with --takeover beside it,
    counting its containers' queries in `query_stats`, its UDP listeners read by
    `udp_receiver` when given). Raises SourceError."""
    if config.snapshot and config.takeover:
        raise SourceError("--takeover follows a live engine; it cannot run with --snapshot")
    if config.snapshot:
        from watchers.snapshot import SnapshotError, SnapshotSource

        try:
            return SnapshotSource.open(table, Path(config.snapshot))
        except SnapshotError as error:
            raise SourceError(str(error)) from None
    from watchers.docker import DockerWatcher

    source: StateSource = DockerWatcher(table, config.docker,
                                        resync_interval=config.resync_interval,
                                        stats=engine_stats)
    if config.attach:
        from watchers.attach import Attaching

        source = Attaching(source, config.docker, config.attach)
    if config.takeover:  # docs/takeover.md: takeover runs beside the source it waits for
        from watchers.takeover_source import WithTakeover

        source = WithTakeover(source, table, config, metrics, query_stats, udp_receiver)
    return source


# ----- what the --http listener reads of the source (docs/operations.md) -----------------------


def describe_source(config: Config) -> str:
    if config.snapshot:
        return f"the snapshot {config.snapshot}"
    return f"the engine at {config.docker}" if config.docker else config.engine_description


def stopped_lookup(config: Config
                   ) -> Callable[[Sequence[str]], Awaitable[Sequence[StoppedContainer]]] | None:
    """How `explain` learns of stopped containers on some networks: from the engine, none
    with a snapshot."""
    if config.snapshot:
        return None
    from watchers.stopped import stopped_containers

    return lambda networks: stopped_containers(config.docker, networks)
