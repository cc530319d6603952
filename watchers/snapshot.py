# The snapshot state source: a JSON file holding what a full sync with the engine reads, served
# with no engine (`scopedns serve --snapshot FILE`, re-read on SIGHUP), and written from a live
# engine by `scopedns snapshot`. Format (version 1; bench/synth.py writes the same):
#
#   {"scopedns_snapshot": 1, "taken_at": "<RFC 3339>",
#    "networks": [<Docker `GET /networks/{id}` objects (`GET /networks` entries are the same)>],
#    "containers": [<Docker `GET /containers/{id}/json` objects of running containers>]}
#
# Loading goes through the live watcher's translation (watchers/translate.py), so a snapshot
# gives exactly the table a first sync with that engine state would; writing reuses the
# watcher's listing (watchers/docker.py list_engine). A file that cannot be used raises
# SnapshotError with one line naming the file and what is wrong; a bad entry is skipped with
# a warning, as the watcher skips one.
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from resolver.model import ContainerInfo, EngineState, NetworkInfo
from resolver.table import NameTable
from watchers.translate import container_from_inspect, engine_time_nano, network_from_inspect

log = logging.getLogger(__name__)

FORMAT_KEY = "scopedns_snapshot"
FORMAT_VERSION = 1
# Warnings about skipped entries, per file and list, before they are only counted.
MAX_SKIP_WARNINGS = 10

_Record = TypeVar("_Record", NetworkInfo, ContainerInfo)


class SnapshotError(Exception):
    """A snapshot file that cannot be used; the message is one line naming the file."""


# ----- reading -------------------------------------------------------------------------------


def load_snapshot(path: Path) -> EngineState:
    """The engine state a snapshot file describes. Raises SnapshotError."""
    try:
        text = path.read_bytes()
    except OSError as error:
        raise SnapshotError(f"snapshot {path}: cannot read: {error.strerror or error}") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SnapshotError(f"snapshot {path}: not JSON: {_first_line(error)}") from None
    del text
    return parse_snapshot(data, str(path), consume=True)


def parse_snapshot(data: Any, source: str, consume: bool = False) -> EngineState:
    """Validate a decoded snapshot and translate it; `source` names it in messages. `consume`:
    each entry's JSON is dropped from `data` once translated, so the records reuse its memory
    (a 10,000-container file: 5 MiB less RSS; docs/performance.md)."""
    if not isinstance(data, Mapping) or FORMAT_KEY not in data:
        raise SnapshotError(f"snapshot {source}: not a scopedns snapshot (a JSON object with "
                            f'"{FORMAT_KEY}": {FORMAT_VERSION} expected)')
    version = data[FORMAT_KEY]
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise SnapshotError(f"snapshot {source}: format version {version!r} is not supported "
                            f"(this scopedns reads {FORMAT_VERSION})")
    if engine_time_nano(data.get("taken_at")) is None:
        raise SnapshotError(f'snapshot {source}: "taken_at" must be an RFC 3339 time, '
                            f"got {data.get('taken_at')!r}")
    for key in ("networks", "containers"):
        if not isinstance(data.get(key), list):
            raise SnapshotError(f'snapshot {source}: "{key}" must be a list')
    networks = _translate(data["networks"], network_from_inspect, f"{source}: networks",
                          "not an object with an Id and a Name", consume)
    containers = _translate(data["containers"], container_from_inspect,
                            f"{source}: containers",
                            "not a running container with an Id and a Name", consume)
    return EngineState(networks, containers)


def _translate(entries: list[Any], translate: Callable[[Any], _Record | None],
               where: str, why: str, consume: bool) -> tuple[_Record, ...]:
    """Each entry through the watcher's translation; bad entries and repeated IDs are skipped
    with a warning (the first MAX_SKIP_WARNINGS of them each, then a count)."""
    records: dict[str, _Record] = {}
    skipped = 0
    for index in range(len(entries)):
        entry = entries[index]
        if consume:
            entries[index] = None
        record = translate(entry)
        reason = why if record is None else "a repeated Id" if record.id in records else ""
        if record is not None and not reason:
            records[record.id] = record
            continue
        skipped += 1
        if skipped <= MAX_SKIP_WARNINGS:
            log.warning("snapshot %s[%d] skipped: %s", where, index, reason)
    if skipped > MAX_SKIP_WARNINGS:
        log.warning("snapshot %s: %d entries skipped in all", where, skipped)
    return tuple(records.values())


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


# ----- writing -------------------------------------------------------------------------------


def snapshot_document(networks: Iterable[Mapping[str, Any]],
                      containers: Iterable[Mapping[str, Any]],
                      taken_at: datetime | None = None) -> dict[str, Any]:
    """A snapshot (version 1) of these raw Docker objects, stamped `taken_at` (default now)."""
    moment = (taken_at or datetime.now(UTC)).astimezone(UTC)
    return {
        FORMAT_KEY: FORMAT_VERSION,
        "taken_at": moment.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "networks": list(networks),
        "containers": list(containers),
    }


def write_snapshot(document: Mapping[str, Any], output: str, *, compact: bool = False) -> None:
    """Write to `output` ("-": stdout). A file is replaced atomically, never left half-written."""
    text = json.dumps(document, indent=None if compact else 1,
                      separators=(",", ":") if compact else None) + "\n"
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(output)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


async def take_snapshot(url: str | None) -> dict[str, Any]:
    """A snapshot of the engine at `url` (None: the default engine), read with the watcher's
    own listing code. Raises one of watchers.engine_api.ENGINE_ERRORS when it cannot be read."""
    from watchers.engine_api import INSPECT_CONCURRENCY, DockerEngine

    engine = DockerEngine(url)
    try:
        listing = await engine.listing(INSPECT_CONCURRENCY)
    finally:
        await engine.close()
    return snapshot_document(listing.networks, listing.containers)


# ----- serving -------------------------------------------------------------------------------


class SnapshotSource:
    """A state source (resolver/sources.py): puts the snapshot in the table (one replace_all:
    the table is synced), then re-reads the file on each reload() (SIGHUP). A reload that
    fails is logged and the previous table is kept."""

    def __init__(self, table: NameTable, path: Path, loaded: EngineState | None = None) -> None:
        self.path = path
        self._table = table
        self._loaded = loaded  # already read and checked (a bad file stops the start)
        self._reload = asyncio.Event()
        self.loads = 0  # snapshots put into the table

    @classmethod
    def open(cls, table: NameTable, path: Path) -> SnapshotSource:
        """Read and check the file now, so that a bad one stops the start. Raises
        SnapshotError."""
        return cls(table, path, load_snapshot(path))

    def reload(self) -> None:
        """Ask for the file to be read again (safe to call from a signal handler)."""
        self._reload.set()

    async def close(self) -> None:
        """Nothing held between reloads."""

    async def run(self) -> None:
        table = self._table
        state, self._loaded = self._loaded, None
        while True:
            if state is None:
                try:
                    state = await asyncio.to_thread(load_snapshot, self.path)
                except SnapshotError as error:
                    log.error("%s; %s", error, "keeping the previous table" if table.synced
                              else "answering SERVFAIL until a reload (SIGHUP) succeeds")
            if state is not None:
                table.replace_all(state)
                self.loads += 1
                log.info("synced %d networks, %d running containers from %s",
                         len(state.networks), len(state.containers), self.path)
            await self._reload.wait()
            self._reload.clear()
            state = None
