# The garbage collector and the name table (docs/performance.md): a loaded table is long-lived
# state, ~130,000 tracked objects for 10,000 containers, and every full collection would walk all
# of them again (~70 M instructions, tens of milliseconds, however little changed). After each full
# load of the table (first sync, reconcile, snapshot load or reload) the shell therefore collects
# once and freezes what survives (gc.freeze): later collections skip it. The next load unfreezes
# first, so whatever a frozen object left behind as cyclic garbage is collected then. Single
# changes (one container, one network) are left to the collector as they are. Asyncio shell
# only: the sans-IO core never touches the collector.
from __future__ import annotations

import asyncio
import gc
import logging

from resolver.table import NameTable

log = logging.getLogger(__name__)


class HeapSettler:
    """Collect and freeze the heap once after each full load of `table`, when the loop next
    runs callbacks (so the loader's own temporaries, such as the engine's JSON, are gone)."""

    def __init__(self, table: NameTable) -> None:
        self._table = table
        self._seen = table.loads
        self._pending = False
        self.settled = 0  # how many times the heap was collected and frozen
        table.on_change(self._changed)

    def _changed(self) -> None:
        if self._table.loads == self._seen:
            return
        self._seen = self._table.loads
        if self._pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a load outside the loop (start-up, tests): settle now
            self.settle()
            return
        self._pending = True
        loop.call_soon(self.settle)

    def settle(self) -> None:
        """Unfreeze, collect everything, freeze what is left."""
        self._pending = False
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.settled += 1
        log.debug("heap settled: %d unreachable objects collected, %d frozen", found,
                  gc.get_freeze_count())
