# The two sides of the isolation property test (test_isolation_property.py) kept in step: the
# toy engine (tests/toy_engine.py) whose commands a history runs, the in-memory engine that
# holds the same state as inspect JSON and emits its events (tests/docker_json.py), the real
# Docker watcher keeping a table from it (tests/stepped_watcher.py), and the reference model
# following the same events as docs/failures.md says. What happens to the connection (the
# engine away and back, a stream that ends, a periodic resync) and scopedns restarting goes
# through the watcher's own paths; the model is told what the docs say follows.
from __future__ import annotations

from resolver.handler import Handler
from tests.docker_json import publish
from tests.isolation_checks import ORDERS
from tests.memory_engine import MemoryEngine
from tests.reference_model import EngineEvent, ReferenceModel
from tests.stepped_watcher import SteppedWatcher
from tests.toy_engine import Engine


class WatchedEngine:
    """A toy engine, and a scopedns (table, long-lived Handlers per alias order, model)
    following it."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.docker = MemoryEngine()
        self.published = 0  # events of engine.log handed to the in-memory engine
        self.modelled = 0  # ... and to the model (behind while the engine is away)
        # The newest event applied since the last listing: a reconnect subscribes `since` its
        # time, so it comes again (docs/failures.md, "Engine loss", step 2).
        self.newest: EngineEvent | None = None
        self.live = True  # False: the engine is away; its events are missed
        self.scopedns = self._fresh(seed=0)

    def _fresh(self, seed: int) -> SteppedWatcher:
        """scopedns (re)starts: an empty table, a new watcher, its first full sync of a
        listing in the order picked by `seed`."""
        self._publish()
        self.docker.listing_seed = seed
        scopedns = SteppedWatcher(self.docker)
        self.model = ReferenceModel()
        self.model.resynced(*self.engine.listing())
        self.modelled, self.newest = len(self.engine.log), None
        self.handlers = {order: Handler(scopedns.table, p) for order, p in ORDERS.items()}
        return scopedns

    def close(self) -> None:
        self.scopedns.close()

    def _publish(self) -> None:
        publish(self.engine, self.docker, self.engine.log[self.published:])
        self.published = len(self.engine.log)

    def step_done(self) -> None:
        """A step's events reach the engine's stream; the watcher applies them (it only
        retries its connection while the engine is away), and so does the model."""
        self._publish()
        before = self.scopedns.counts
        self.scopedns.settle()
        assert self.scopedns.counts[0] == before[0], "a step made the watcher reconnect"
        if self.live:
            self._model_catches_up()

    def _model_catches_up(self) -> None:
        for event in self.engine.log[self.modelled:]:
            self.model.event(event, self.engine)
            if event.again is None:
                self.newest = event
        self.modelled = len(self.engine.log)

    def goes_away(self) -> None:
        """The engine stops answering and its stream ends: the watcher keeps the last table
        and retries (docs/failures.md); events from now on are missed until it is back."""
        self.docker.down = True
        self.docker.cut_streams()
        self.scopedns.settle()
        self.live = False

    def reconnect(self, seed: int) -> None:
        """The engine is back (or, while it was there, the stream ended): the watcher
        reconnects, replays what it missed, and reconciles against a listing in the order
        picked by `seed`. The model replays the same events, then resyncs."""
        self.docker.listing_seed = seed
        self.docker.down = False
        if self.live:
            self.docker.cut_streams()
        connects, syncs = self.scopedns.counts
        self.scopedns.settle()
        assert self.scopedns.counts == (connects + 1, syncs + 1), "one reconnect, one sync"
        if self.newest is not None:
            self.model.event(self.newest, self.engine)
        self._model_catches_up()
        self.model.resynced(*self.engine.listing())
        self.live, self.newest = True, None

    def periodic_resync(self, seed: int) -> None:
        """--resync-interval passes: a full listing, on the same connection."""
        self.docker.listing_seed = seed
        connects, syncs = self.scopedns.counts
        self.scopedns.resync_period()
        assert self.scopedns.counts == (connects, syncs + 1), "one sync, no reconnect"
        self.model.resynced(*self.engine.listing())
        self.newest = None

    def scopedns_restarts(self, seed: int) -> None:
        """A new scopedns (the engine is there again, if it was away)."""
        self.scopedns.close()
        self.docker.down = False
        self.scopedns = self._fresh(seed)
        self.live = True
