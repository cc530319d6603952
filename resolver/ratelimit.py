# Per-source query rate limiting (`--rate-limit QPS`): a token bucket per source address, with
# the clock passed in, and the REFUSED reply a limited query gets. Sans-IO and bounded: a source
# idle long enough to have refilled is forgotten, and at most MAX_TRACKED_SOURCES are tracked.
#
# Policy, per source, with QPS = the limit and BURST = its bucket size (default: QPS):
# - up to QPS queries a second (after a burst of BURST) are answered as usual;
# - the next QPS a second get REFUSED with the question echoed, so stub resolvers (which drop
#   replies whose question does not match) see a clear error instead of a timeout;
# - past twice the limit, only 1 in SLIP gets REFUSED and the rest are dropped (BIND's RRL
#   "slip"): a flood, or spoofed traffic aimed at a victim, gets at most ~half its volume back
#   in replies no larger than the queries, while a real client that retries still hears why.
# - Over TCP nothing is ever dropped (the source is not spoofed, and a silent gap would stall
#   the client's in-order pipeline): every limited query gets REFUSED.
# A notice is logged once per source per LOG_INTERVAL, never per query.
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from enum import Enum

from dns.rcode import REFUSED

from resolver.slowpath import parse_any, query_of
from resolver.wire import Reject, render

log = logging.getLogger(__name__)

# Spoofed floods from random addresses could grow the table without end: past this many
# sources, forget the ones that have refilled, then the oldest half.
MAX_TRACKED_SOURCES = 65_536
SLIP = 2  # BIND's default: 1 in 2 replies past the limit
LOG_INTERVAL = 30.0  # seconds between two notices about one source


class Limited(Enum):
    """What becomes of a query over the limit."""

    REFUSE = "refuse"
    DROP = "drop"


class _Bucket:
    __slots__ = ("answers", "last", "notice_at", "refusals", "since_notice", "slip")

    def __init__(self, burst: float, now: float) -> None:
        self.answers = burst  # tokens for queries answered normally
        self.refusals = burst  # tokens for REFUSED replies past the limit
        self.last = now
        self.slip = 0
        self.notice_at = -math.inf
        self.since_notice = 0


class RateLimiter:
    """Decides, per source address, whether a query is answered, refused or dropped."""

    def __init__(self, qps: float, burst: float = 0, *,
                 clock: Callable[[], float], max_sources: int = MAX_TRACKED_SOURCES) -> None:
        if qps <= 0:
            raise ValueError("the rate limit must be positive")
        self.qps = qps
        self.burst = max(burst or qps, 1.0)
        self._clock = clock
        self._max_sources = max_sources
        self._refill_seconds = self.burst / qps  # an idle source is back to a full bucket
        self._buckets: dict[str, _Bucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, source: str, tcp: bool) -> Limited | None:
        """None when the query may be answered; else what to do with it."""
        now = self._clock()
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._track(source, now)
        else:
            elapsed = max(now - bucket.last, 0.0)
            bucket.last = now
            bucket.answers = min(self.burst, bucket.answers + elapsed * self.qps)
            bucket.refusals = min(self.burst, bucket.refusals + elapsed * self.qps)
        if bucket.answers >= 1:
            bucket.answers -= 1
            return None
        self._notice(source, bucket, now)
        if bucket.refusals >= 1:
            bucket.refusals -= 1
            return Limited.REFUSE
        bucket.slip = (bucket.slip + 1) % SLIP
        return Limited.REFUSE if tcp or bucket.slip == 0 else Limited.DROP

    def _track(self, source: str, now: float) -> _Bucket:
        if len(self._buckets) >= self._max_sources:
            self._forget(now)
        bucket = self._buckets[source] = _Bucket(self.burst, now)
        return bucket

    def _forget(self, now: float) -> None:
        """Drop sources whose buckets have refilled (they start full anyway); if none has,
        drop the oldest half (a flooding source among them gets one more burst)."""
        idle = [source for source, bucket in self._buckets.items()
                if now - bucket.last >= self._refill_seconds]
        if not idle:
            idle = list(self._buckets)[: max(len(self._buckets) // 2, 1)]
        for source in idle:
            del self._buckets[source]

    def _notice(self, source: str, bucket: _Bucket, now: float) -> None:
        bucket.since_notice += 1
        if now - bucket.notice_at >= LOG_INTERVAL:
            log.warning("rate limit: %s sends more than %g queries/s; answering REFUSED "
                        "(%d limited since the last notice)", source, self.qps,
                        bucket.since_notice)
            bucket.notice_at = now
            bucket.since_notice = 0


def limited_reply(data: bytes, verdict: Limited, tcp: bool) -> bytes | None:
    """REFUSED with the question echoed; None for DROP and for what the accept filter drops. Input
    the accept filter rejects gets its usual NOTIMP/FORMERR."""
    if verdict is Limited.DROP:
        return None
    parsed = parse_any(data)
    if isinstance(parsed, Reject):
        return parsed.reply
    query = query_of(parsed)
    return render(query, REFUSED, (), query.max_size(tcp))
