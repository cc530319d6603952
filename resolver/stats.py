# Plain counters for operations (docs/operations.md): what the packet path, the forwarder, the
# TCP shell and the engine watcher count, as int attributes and dicts of ints. Nothing here calls
# a metrics library: the hot path pays for a dict increment, and resolver/metrics.py turns these
# into Prometheus metric families when /metrics is scraped. Sans-IO; clocks are passed in.
from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Sequence


class How:
    """How a query was answered (the `how` label of scopedns_queries_total). Plain ints, not
    an IntEnum: an enum in a dict key hashes through Python code, ~1 us per query."""

    REPLY_CACHE = 0  # a kept UDP reply, only the ID swapped
    FAST = 1  # built from prepared wire records
    SLOW = 2  # built by dnspython (unusual queries, authority sections)
    FORWARDED = 3  # relayed from an upstream (or SERVFAIL once every upstream failed)
    REFUSED = 4  # a stranger (no view), or past --max-forwards
    RATE_LIMITED = 5  # --rate-limit: REFUSED or dropped
    REJECTED = 6  # malformed or unsupported (FORMERR, NOTIMP, BADVERS, dropped)
    ERROR = 7  # an internal error: SERVFAIL
    UPSTREAM_CACHE = 8  # --cache-size: an upstream answer kept, counted down (resolver/cache.py)


HOW_LABELS = ("reply_cache", "fast", "slow", "forwarded", "refused", "rate_limited",
              "rejected", "error", "upstream_cache")
NO_REPLY = 16  # the rcode of a query that got no reply (dropped); header rcodes are 0-15
NO_QTYPE = 65536  # the qtype of a query with no readable question


# Query counts are keyed by one int packing (qtype, rcode, how, tcp): an int hashes to itself,
# where a tuple key costs a hash per element on every query; resolver/metrics.py unpacks and
# names them at scrape time.
def query_key(tcp: bool, qtype: int, rcode: int, how: int) -> int:
    return ((qtype << 5 | rcode) << 4 | how) << 1 | tcp


def unpack_query_key(key: int) -> tuple[bool, int, int, int]:
    """(tcp, qtype, rcode, how) of a query_key()."""
    return bool(key & 1), key >> 10, key >> 5 & 31, key >> 1 & 15


def _qtype_at(message: bytes, start: int) -> int:
    """The QTYPE after the name at `start` (a zero byte inside a label misreads it: such a
    query is counted under an odd type, nothing worse)."""
    end = message.find(0, start)
    return message[end + 1] << 8 | message[end + 2] if 0 < end < len(message) - 2 else NO_QTYPE

QueryObserver = Callable[[bytes, str, bool, "bytes | None", int], None]
# Distinct kept replies counted before they are folded into the labelled counts (a scrape folds
# them too): bounds memory when nobody scrapes.
MAX_HIT_KEYS = 10_000


class QueryStats:
    """Queries counted by transport, type, rcode and how they were answered. `observers` (the
    query log) see every query too; they must be cheap or rate-limit themselves.

    Kept-reply hits, the hot path, are counted per reply tail (the reply after its ID: a bytes
    object whose hash Python keeps), which costs a fifth of building a labelled key; fold()
    turns them into labelled counts when /metrics is read."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}  # query_key() -> queries
        self.hits: dict[bytes, int] = {}
        self.observers: list[QueryObserver] = []

    def hit(self, data: bytes, source: str, tail: bytes) -> None:
        """A UDP query answered from a kept reply (`tail`: the reply after its ID)."""
        hits = self.hits
        count = hits.get(tail)
        if count is None:
            if len(hits) >= MAX_HIT_KEYS:
                self.fold()
                hits = self.hits
            hits[tail] = 1
        else:
            hits[tail] = count + 1
        if self.observers:
            for observer in self.observers:
                observer(data, source, False, data[:2] + tail, How.REPLY_CACHE)

    def fold(self) -> None:
        """Move the kept-reply hits into the labelled counts."""
        hits, self.hits = self.hits, {}
        counts = self.counts
        for tail, count in hits.items():  # the question starts 10 bytes into the tail
            key = query_key(False, _qtype_at(tail, 10), tail[1] & 0x0F, How.REPLY_CACHE)
            counts[key] = counts.get(key, 0) + count

    def note(self, data: bytes, source: str, tcp: bool, reply: bytes | None, how: int) -> None:
        """Count one query; `how` is a How value."""
        rcode = reply[3] & 0x0F if reply is not None else NO_REPLY  # replies: >= 12 bytes
        end = data.find(0, 12)  # _qtype_at(data, 12), inlined: this runs for every query
        qtype = data[end + 1] << 8 | data[end + 2] if 0 < end < len(data) - 2 else NO_QTYPE
        key = ((qtype << 5 | rcode) << 4 | how) << 1 | tcp
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        if self.observers:
            for observer in self.observers:
                observer(data, source, tcp, reply, how)


class Histogram:
    """Observations in fixed buckets (upper bounds, seconds), as plain ints and one float."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.buckets = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs as Prometheus wants them, +Inf last."""
        pairs, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.buckets, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs


# Upstream round trips: loopback fakes answer in ~0.1 ms, real resolvers in 1-100 ms, and a try
# is abandoned at --upstream-timeout (2 s by default).
UPSTREAM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Engine event to table change: an inspect on a quiet engine takes ~1-5 ms, a busy one 100 ms+.
EVENT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

UPSTREAM_OUTCOMES = ("answer", "servfail", "refused", "timeout", "error", "spoof_dropped")


class UpstreamStats:
    """One upstream's tries: outcome counts and round-trip latency of answered tries."""

    def __init__(self) -> None:
        self.outcomes = dict.fromkeys(UPSTREAM_OUTCOMES, 0)
        self.latency = Histogram(UPSTREAM_BUCKETS)


class EngineStats:
    """What the state source reports: connection, reconnects, events, syncs. Times are Unix
    seconds (wall clock) so that they compare with the engine's event times."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.connected = False
        self.connects = 0  # cycles that reached a full sync; reconnects = connects - 1
        self.events: dict[str, int] = {}  # event kind applied -> count
        self.event_latency = Histogram(EVENT_BUCKETS)
        self.syncs = 0
        self.sync_changes = {"added": 0, "removed": 0, "changed": 0}
        self.last_sync: float | None = None
        self.lost_at: float | None = None  # when the engine went away after a sync
        self.last_error = ""

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def synced(self, added: int, removed: int, changed: int) -> None:
        self.syncs += 1
        self.sync_changes["added"] += added
        self.sync_changes["removed"] += removed
        self.sync_changes["changed"] += changed
        self.last_sync = self.clock()

    def cycle_synced(self) -> None:
        """A connection cycle reached its full sync: the table is the engine's again."""
        self.connected = True
        self.connects += 1
        self.lost_at = None

    def lost(self, reason: str) -> None:
        if self.connected or self.lost_at is None:
            self.lost_at = self.clock()
        self.connected = False
        self.last_error = reason

    def applied(self, kind: str, event_time_ns: int | None, live: bool) -> None:
        """An event's change is in the table. Replayed events (`live` False) are counted but
        not timed: their latency is the outage, not the watcher."""
        self.events[kind] = self.events.get(kind, 0) + 1
        if live and event_time_ns is not None:
            self.event_latency.observe(max(0.0, self.clock() - event_time_ns / 1e9))
