# State sources that feed resolver.table.NameTable: the Docker engine watcher and the pure
# translation of Docker's JSON into resolver.model records. Re-exports the public names only.
from watchers.docker import DockerWatcher
from watchers.translate import (
    EventAction,
    EventKind,
    classify_event,
    container_from_inspect,
    network_from_inspect,
)

__all__ = [
    "DockerWatcher",
    "EventAction",
    "EventKind",
    "classify_event",
    "container_from_inspect",
    "network_from_inspect",
]
