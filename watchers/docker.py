# The Docker state source: keeps a NameTable equal to the engine, through the Engine protocol
# of engine_api.py (the real engine, or an in-memory one in tests). One cycle: subscribe to
# /events (`since` the last event applied, so missed ones are replayed, in order, before
# anything else), reconcile against a full listing
# (`table.replace_all()`), then apply events one at a time, with a reconcile every
# --resync-interval. What leaves (die, stop, destroy, disconnect) leaves at once; what may have
# joined is re-inspected (events carry no addresses); a stale event (replayed, duplicated, out
# of order) only causes a re-inspection. When the stream ends or the engine is unreachable, the
# table is kept as it is (we keep serving), and the cycle starts again after an exponential
# backoff, with a fresh client (docs/failures.md). Rules: every table change is one
# synchronous call, never split by an await (docs/design.md); nothing but CancelledError
# leaves run().
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from resolver.model import EngineState
from resolver.stats import EngineStats
from resolver.table import NameTable
from watchers.engine_api import (
    ENGINE_ERRORS,
    INSPECT_CONCURRENCY,
    DockerEngine,
    Engine,
    EventFeed,
    Lookup,
    StreamEnded,
    describe,
)
from watchers.translate import (
    EventAction,
    EventKind,
    classify_event,
    container_from_inspect,
    effective_kind,
    network_from_inspect,
)

log = logging.getLogger(__name__)

# Reconnect delays: fast enough to ride out an engine restart, capped so a host without Docker
# is not hammered (docs/failures.md).
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
# After a reconnect, the engine replays missed events at once: this long without one means done.
REPLAY_QUIET = 0.5
# A full reconcile this often, in case an event was missed (none should be); 0 turns it off.
DEFAULT_RESYNC_INTERVAL = 300.0


class DockerWatcher:
    """Feeds `table` from the Docker engine at `url` (e.g. unix:///var/run/docker.sock; None:
    aiodocker's default, DOCKER_HOST or the local socket). `connect` makes the engine client
    of one connection cycle (tests pass an in-memory engine)."""

    def __init__(
        self,
        table: NameTable,
        url: str | None,
        *,
        connect: Callable[[], Engine] | None = None,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
        concurrency: int = INSPECT_CONCURRENCY,
        resync_interval: float = DEFAULT_RESYNC_INTERVAL,
        stats: EngineStats | None = None,
    ) -> None:
        self._table = table
        self._url = url or "the default engine (DOCKER_HOST or /var/run/docker.sock)"
        self._connect = connect or (lambda: DockerEngine(url))
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._concurrency = max(1, concurrency)
        self._engine: Engine | None = None
        self._closed = False
        self._wake = asyncio.Event()
        self._fresh_from = 0  # events stamped before this are stale (see _apply)
        self._resync_interval = resync_interval if resync_interval > 0 else None
        self.reconciles = 0  # full listings applied (first sync included)
        self._synced_this_cycle = False
        # Connection, events and syncs for /metrics and /readyz (docs/operations.md).
        self.stats = stats if stats is not None else EngineStats()

    async def run(self) -> None:
        """Keep the table in sync until cancelled (or until close())."""
        delay = self._backoff_initial
        while not self._closed:
            self._synced_this_cycle = False
            try:
                await self._cycle()
                reason = "event stream ended"
            except asyncio.CancelledError:
                raise
            except StreamEnded as exc:
                reason = str(exc)
            except ENGINE_ERRORS as exc:
                reason = describe(exc)
            except Exception as exc:
                log.exception("unexpected failure")
                reason = describe(exc)
            if self._closed:
                return
            self.stats.lost(reason)
            if self._synced_this_cycle:
                delay = self._backoff_initial
            if self._table.synced:
                log.warning("%s; serving the last known table, reconnecting in %.1fs",
                            reason, delay)
            else:
                log.warning("cannot reach the engine at %s (%s); answering SERVFAIL "
                            "until it can, retrying in %.1fs; point --docker or DOCKER_HOST "
                            "elsewhere if it lives elsewhere", self._url, reason, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)  # close() cuts the wait short
            delay = min(delay * 2, self._backoff_max)

    def reload(self) -> None:
        """SIGHUP: the engine is the truth and events keep the table equal to it; nothing to
        re-read (a periodic reconcile covers a missed event)."""
        log.info("reload asked; the table follows the engine's events already")

    async def close(self) -> None:
        """Stop reconnecting and release the engine connection. Idempotent."""
        self._closed = True
        self._wake.set()
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.close()

    # ----- one cycle -------------------------------------------------------------------------

    async def _cycle(self) -> None:
        engine = self._connect()
        self._engine = engine
        events: EventFeed | None = None
        try:
            now = await engine.now()
            # Replay from the newest event applied or the last listing, whichever is later:
            # after an outage with no event before it, the listing is where we left off.
            replay_from = self._fresh_from or None
            # Events from `since` on are replayed, so none is lost between this subscription
            # reaching the engine and the listing below.
            events = engine.subscribe(replay_from or now)
            held = None
            if replay_from is not None and now is not None:
                held = await self._replay(engine, events, now)
            await self._reconcile(engine, now)
            self._synced_this_cycle = True
            self.stats.cycle_synced()
            await self._consume(engine, events, held)
        finally:
            if events is not None:
                events.close()
            if self._engine is engine:
                self._engine = None
            await engine.close()

    async def _replay(self, engine: Engine, events: EventFeed,
                      until_ns: int) -> EventAction | None:
        """Apply, in order, the events missed while disconnected (those stamped before `until_ns`),
        so that endpoints that joined meanwhile keep the order they joined in; the reconcile that
        follows catches anything else. Returns the first newer event, held for after it."""
        replayed = 0
        while True:
            action = _classified(await events.next(REPLAY_QUIET))
            if action is None or action.time_nano is None or action.time_nano >= until_ns:
                log.info("replayed %d missed events", replayed)
                return action
            await self._apply(engine, action, live=False)
            replayed += 1

    async def _reconcile(self, engine: Engine, listed_at: int | None) -> None:
        """Make the table equal to a full listing: add what is new, drop what vanished, update
        what changed. Events stamped before `listed_at` are reflected in it: from now on they
        are only re-inspected, never taken as removals (they may be stale)."""
        state = await self._full_state(engine)
        before = {c.id: c for c in self._table.containers}
        after = {c.id: c for c in state.containers}
        added = len(after.keys() - before.keys())
        removed = len(before.keys() - after.keys())
        changed = sum(1 for cid in after.keys() & before.keys() if after[cid] != before[cid])
        self._table.replace_all(state)
        self.stats.synced(added, removed, changed)
        if listed_at is not None:
            self._fresh_from = max(self._fresh_from, listed_at)
        self.reconciles += 1
        log.info("synced %d networks, %d running containers (%d added, %d removed, "
                 "%d changed)", len(state.networks), len(state.containers), added, removed, changed)

    async def _full_state(self, engine: Engine) -> EngineState:
        listing = await engine.listing(self._concurrency)
        networks = tuple(n for n in map(network_from_inspect, listing.networks) if n)
        containers = tuple(c for c in map(container_from_inspect, listing.containers) if c)
        return EngineState(networks, containers)

    # ----- events ----------------------------------------------------------------------------

    async def _consume(self, engine: Engine, events: EventFeed,
                       held: EventAction | None) -> None:
        """Apply events one by one, and reconcile every `resync_interval` seconds, however busy
        the stream is."""
        if held is not None:
            await self._apply(engine, held)
        loop = asyncio.get_running_loop()
        interval = self._resync_interval
        due = None if interval is None else loop.time() + interval
        while True:
            event = await events.next(None if due is None else max(0.0, due - loop.time()))
            if event is not None:
                await self._apply(engine, classify_event(event))
            elif interval is not None:
                await self._reconcile(engine, await engine.now())
                due = loop.time() + interval

    async def _apply(self, engine: Engine, action: EventAction, live: bool = True) -> None:
        kind = effective_kind(action, self._fresh_from)
        when = action.time_nano
        if kind is EventKind.REFRESH_CONTAINER:
            await self._refresh_container(engine, action.container_id)
        elif kind is EventKind.LEAVE_NETWORK:
            await self._refresh_container(engine, action.container_id, left=action.network_id)
        elif kind is EventKind.REMOVE_CONTAINER:
            self._table.remove_container(action.container_id)
        elif kind is EventKind.REFRESH_NETWORK:
            await self._refresh_network(engine, action.network_id)
        elif kind is EventKind.REMOVE_NETWORK:
            self._table.remove_network(action.network_id)
        if kind is not EventKind.IGNORE:
            self.stats.applied(kind.value, when, live)
        if when is not None:
            self._fresh_from = max(self._fresh_from, when)

    async def _refresh_container(self, engine: Engine, cid: str, left: str = "") -> None:
        """Make the table's copy of `cid` what the engine says now, except for an endpoint on
        network `left`: the event said it left; if it is back, a later `connect` re-adds it."""
        data = await engine.container(cid)
        if data is Lookup.FAILED:
            return
        info = None if data is Lookup.GONE else container_from_inspect(data)
        if info is None:
            self._table.remove_container(cid)
            return
        if left:
            info = replace(info, endpoints=tuple(e for e in info.endpoints
                                                 if e.network_id != left))
        known = {n.id for n in self._table.networks}
        unknown = [e.network_id for e in info.endpoints if e.network_id not in known]
        fetched = [await engine.network(nid) for nid in unknown]
        # From here on, no await: the networks, then the container, each in one call.
        for raw in fetched:
            network = None if isinstance(raw, Lookup) else network_from_inspect(raw)
            if network is not None:
                self._table.upsert_network(network)
        self._table.upsert_container(info)

    async def _refresh_network(self, engine: Engine, nid: str) -> None:
        data = await engine.network(nid)
        if data is Lookup.FAILED:
            return
        network = None if data is Lookup.GONE else network_from_inspect(data)
        if network is None:
            self._table.remove_network(nid)
        else:
            self._table.upsert_network(network)


def _classified(event: object) -> EventAction | None:
    return None if event is None else classify_event(event)
