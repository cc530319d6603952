# The real Docker watcher (watchers/docker.py) run step by step against the in-memory engine
# (tests/memory_engine.py), with no sleeps and no threads: its event loop keeps virtual time,
# which moves only when nothing is ready to run, straight to the next timer. `settle` runs the
# loop until the watcher has nothing left to do before the horizon but wait for the engine's
# next event: every queued event applied, a replay's quiet period (docs/failures.md) and a
# reconnect's backoff passed in no real time. A periodic reconcile is a settle whose horizon
# reaches past the resync interval.
from __future__ import annotations

import asyncio
import contextlib
import selectors

from resolver.table import NameTable
from tests.memory_engine import MemoryEngine
from watchers.docker import DockerWatcher

# Virtual seconds a settle may advance: past the replay's quiet period and the longest backoff.
SETTLE_HORIZON = 100.0
# Far beyond any history's settles, so that a periodic reconcile happens only when asked for.
RESYNC_INTERVAL = 100_000.0


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer instead of waiting for it."""

    def __init__(self) -> None:
        self._now = 0.0
        self._until = 0.0
        super().__init__(_NoWaitSelector(self))

    def time(self) -> float:
        return self._now

    def run_until_idle(self, horizon: float) -> None:
        """Run until nothing is ready and no timer is due within `horizon` virtual seconds."""
        self._until = self._now + horizon
        self.run_forever()

    def idle(self, timeout: float | None) -> None:
        """Nothing is ready: move the clock to the next timer, or stop if it is too far."""
        if timeout is None or self._now + timeout > self._until:
            self.stop()
        else:
            self._now += timeout


class _NoWaitSelector(selectors.SelectSelector):
    """Polls the loop's own wake-up pipe without blocking; the wait is virtual."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if not ready and timeout != 0:
            self._loop.idle(timeout)
        return ready


class SteppedWatcher:
    """One scopedns: a fresh table fed by a DockerWatcher from `engine`, synced once built.
    Close it (contextlib.closing) to stop the watcher."""

    def __init__(self, engine: MemoryEngine) -> None:
        self.loop = VirtualTimeLoop()
        self.table = NameTable()
        self.watcher = DockerWatcher(self.table, None, connect=engine.connect,
                                     resync_interval=RESYNC_INTERVAL)
        self._task = self.loop.create_task(self.watcher.run())
        self.settle()
        assert self.table.synced, "the first sync"

    def settle(self, horizon: float = SETTLE_HORIZON) -> None:
        """Run the watcher until it waits for the engine (or for a timer past `horizon`)."""
        self.loop.run_until_idle(horizon)
        if self._task.done():
            self._task.result()  # raises what ended it
            raise AssertionError("the watcher returned")

    def resync_period(self) -> None:
        """Let one --resync-interval pass: a periodic reconcile."""
        self.settle(RESYNC_INTERVAL + SETTLE_HORIZON)

    @property
    def counts(self) -> tuple[int, int]:
        """(connection cycles that synced, full listings applied)."""
        return self.watcher.stats.connects, self.watcher.stats.syncs

    def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self._task)
        self.loop.run_until_complete(self.watcher.close())
        self.loop.close()
