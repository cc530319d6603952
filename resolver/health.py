# Upstream health (docs/forwarding-cache.md): consecutive failures (no reply within the try's
# time: a timeout, a closed port, only spoofs) per upstream. After DOWN_AFTER of them in a row
# an upstream is down: tried after the healthy ones instead of in its place, and probed with
# a copy of one real query at most every PROBE_EVERY seconds, beside the query (the client
# never waits for the probe). Any reply, even SERVFAIL, means it is reachable again. Sans-IO:
# the forwarder reports outcomes, a clock is injected.
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Final

log = logging.getLogger(__name__)

# Three timeouts in a row: one lost datagram (or two) does not take a server out of turn.
DOWN_AFTER: Final = 3
# A dead server costs one extra datagram this often; one that came back is in turn again at
# most this many seconds later.
PROBE_EVERY: Final = 5.0


class UpstreamHealth:
    """The order to try upstreams in, from what their last tries did."""

    def __init__(self, names: Sequence[str], down_after: int = DOWN_AFTER,
                 probe_every: float = PROBE_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._names = tuple(names)
        self._down_after = down_after
        self._probe_every = probe_every
        self._clock = clock
        self._failures = [0] * len(self._names)
        self._next_probe = [0.0] * len(self._names)
        # How many are down: none (the usual case) makes plan() a list copy.
        self._down = sum(self.is_down(i) for i in range(len(self._names)))
        self._in_order = list(range(len(self._names)))

    def is_down(self, index: int) -> bool:
        return self._failures[index] >= self._down_after

    def plan(self) -> tuple[list[int], int | None]:
        """(upstream indexes in the order to try them, one down upstream to probe beside
        this query or None). Healthy ones keep their configured order, down ones follow;
        when every one is down the query itself tries them all, so no probe is added."""
        if not self._down:
            return self._in_order.copy(), None
        healthy = [i for i in range(len(self._names)) if not self.is_down(i)]
        down = [i for i in range(len(self._names)) if self.is_down(i)]
        probe = None
        if healthy and down:
            now = self._clock()
            for index in down:
                if now >= self._next_probe[index]:
                    self._next_probe[index] = now + self._probe_every
                    probe = index
                    break
        return healthy + down, probe

    def succeeded(self, index: int) -> None:
        if self._failures[index] == 0:
            return
        if self.is_down(index):
            self._down -= 1
            log.warning("upstream %s answers again: back in its turn", self._names[index])
        self._failures[index] = 0

    def failed(self, index: int) -> None:
        self._failures[index] += 1
        if self._failures[index] == self._down_after:
            self._down += 1
            self._next_probe[index] = self._clock() + self._probe_every
            log.warning("upstream %s failed %d times in a row: tried last, probed every %gs",
                        self._names[index], self._down_after, self._probe_every)
