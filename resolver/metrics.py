# The Prometheus side of operations (docs/operations.md): one custom collector that reads the
# plain counters of resolver/stats.py, the table, the forwarder and the TCP shell when /metrics
# is scraped, and renders them through prometheus_client's metric families (no hand-written
# exposition). Other features add their own metrics here: Metrics.counter(), .gauge() and
# .histogram() hand back plain objects to increment, and the collector shows them.
from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import dns.rcode
import dns.rdatatype
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from resolver.forward import Forwarder
from resolver.stats import (
    HOW_LABELS,
    NO_QTYPE,
    NO_REPLY,
    EngineStats,
    Histogram,
    QueryStats,
    unpack_query_key,
)
from resolver.table import NameTable
from resolver.tcp import TcpClients

PREFIX = "scopedns_"
# qtype label values; anything else is "other" so that odd queries cannot grow the series.
NAMED_QTYPES = frozenset({"A", "AAAA", "PTR", "SRV", "TXT", "MX", "CNAME", "NS", "SOA", "ANY",
                          "HTTPS", "SVCB", "CAA", "DS", "DNSKEY", "NAPTR"})

Source = Callable[[], Iterable[Metric]]


@dataclass
class LabelledCounts:
    """A counter family for another feature: `inc(*labels)` is a dict increment."""

    labels: tuple[str, ...]
    values: dict[tuple[str, ...], int] = field(default_factory=dict)

    def inc(self, *labels: str, by: int = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + by


class Metrics(Collector):
    """Every metric /metrics shows: the core families and whatever features register."""

    def __init__(self) -> None:
        self._sources: list[Source] = []

    def add(self, source: Source) -> None:
        self._sources.append(source)

    def counter(self, name: str, documentation: str, labels: Iterable[str] = ()
                ) -> LabelledCounts:
        """A counter `scopedns_<name>_total` (e.g. the takeover's containers taken over)."""
        counts = LabelledCounts(tuple(labels))

        def collect() -> Iterator[Metric]:
            family = CounterMetricFamily(PREFIX + name, documentation, labels=counts.labels)
            for values, value in sorted(counts.values.items()):
                family.add_metric(list(values), value)
            yield family
        self.add(collect)
        return counts

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge `scopedns_<name>` read at scrape time (e.g. healthy holders)."""
        self.add(lambda: [GaugeMetricFamily(PREFIX + name, documentation, value=read())])

    def histogram(self, name: str, documentation: str, bounds: Iterable[float]) -> Histogram:
        """A histogram `scopedns_<name>` in seconds (e.g. takeover latency)."""
        histogram = Histogram(tuple(bounds))
        self.add(lambda: [_histogram(PREFIX + name, documentation, histogram)])
        return histogram

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source()

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry


def _histogram(name: str, documentation: str, histogram: Histogram,
               labels: tuple[list[str], list[str]] = ([], [])) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels[0])
    family.add_metric(labels[1], histogram.cumulative(), histogram.total)
    return family


def qtype_label(qtype: int) -> str:
    if qtype == NO_QTYPE:
        return "none"
    text = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype))
    return text if text in NAMED_QTYPES else "other"


def rcode_label(rcode: int) -> str:
    return "none" if rcode == NO_REPLY else dns.rcode.to_text(dns.rcode.Rcode.make(rcode))


def query_families(stats: QueryStats,
                   lock: AbstractContextManager[Any] | None = None) -> Iterator[Metric]:
    """`lock`: the handler's, held by whoever counts (resolver/handler.py)."""
    family = CounterMetricFamily(
        PREFIX + "queries", "Queries by transport, type, rcode (none: no reply) and how they "
        "were answered", labels=["transport", "qtype", "rcode", "how"])
    merged: dict[tuple[str, ...], int] = {}
    with lock or nullcontext():
        stats.fold()
        counted = list(stats.counts.items())
    for packed, count in counted:
        tcp, qtype, rcode, how = unpack_query_key(packed)
        key = ("tcp" if tcp else "udp", qtype_label(qtype), rcode_label(rcode), HOW_LABELS[how])
        merged[key] = merged.get(key, 0) + count
    for labels, count in sorted(merged.items()):
        family.add_metric(list(labels), count)
    yield family


def forward_families(forwarder: Forwarder | None) -> Iterator[Metric]:
    yield GaugeMetricFamily(PREFIX + "forwards_in_flight", "Forwards waiting for an upstream",
                            value=forwarder.in_flight if forwarder is not None else 0)
    tries = CounterMetricFamily(
        PREFIX + "upstream_tries", "Tries per upstream by outcome (spoof_dropped: a reply "
        "from the wrong ID or question, dropped while the right one is awaited)",
        labels=["upstream", "outcome"])
    latency = HistogramMetricFamily(
        PREFIX + "upstream_latency_seconds", "Round trip of upstream tries that got a reply",
        labels=["upstream"])
    for upstream, stats in (forwarder.stats.items() if forwarder is not None else ()):
        for outcome, count in stats.outcomes.items():
            tries.add_metric([str(upstream), outcome], count)
        latency.add_metric([str(upstream)], stats.latency.cumulative(), stats.latency.total)
    yield tries
    yield latency


def engine_families(engine: EngineStats, clock: Callable[[], float]) -> Iterator[Metric]:
    yield GaugeMetricFamily(PREFIX + "engine_connected", "1 while the engine's event stream "
                            "is followed after a full sync", value=int(engine.connected))
    yield CounterMetricFamily(PREFIX + "engine_reconnects", "Connections to the engine that "
                              "reached a full sync after the first", value=engine.reconnects)
    events = CounterMetricFamily(PREFIX + "engine_events", "Engine events applied to the "
                                 "table, by what they asked", labels=["kind"])
    for kind, count in sorted(engine.events.items()):
        events.add_metric([kind], count)
    yield events
    yield _histogram(PREFIX + "engine_event_to_table_seconds", "From an engine event's time "
                     "to its change being in the table (live events; replays not timed)",
                     engine.event_latency)
    yield CounterMetricFamily(PREFIX + "engine_syncs", "Full listings applied (first sync, "
                              "reconnects, --resync-interval)", value=engine.syncs)
    changes = CounterMetricFamily(PREFIX + "engine_sync_changes", "Containers a full listing "
                                  "added, removed or changed", labels=["change"])
    for change, count in engine.sync_changes.items():
        changes.add_metric([change], count)
    yield changes
    yield GaugeMetricFamily(PREFIX + "engine_last_sync_timestamp_seconds", "Unix time of the "
                            "last full listing (0: none yet)", value=engine.last_sync or 0)
    away = 0.0 if engine.connected or engine.lost_at is None else clock() - engine.lost_at
    yield GaugeMetricFamily(PREFIX + "engine_disconnected_seconds", "How long the engine has "
                            "been away (the table may be this stale); 0 while connected",
                            value=away)


def table_families(table: NameTable) -> Iterator[Metric]:
    networks = table.networks
    containers = table.containers
    names = failed_over = 0
    for network in networks:
        records = table.records(network.id)
        if records is None:
            continue
        names += len(records.holders)
        failed_over += sum(1 for holders in records.holders.values()
                           if not holders[0].ready and any(h.ready for h in holders))
    sizes = (("networks", len(networks), "Networks known"),
             ("containers", len(containers), "Running containers known"),
             ("endpoints", sum(len(c.endpoints) for c in containers), "Container endpoints"),
             ("names", names, "Distinct names summed over user-defined networks"))
    for what, value, documentation in sizes:
        yield GaugeMetricFamily(f"{PREFIX}table_{what}", documentation, value=value)
    yield GaugeMetricFamily(PREFIX + "table_synced", "1 once the first full sync is done",
                            value=int(table.synced))
    # Health (docs/health.md): read from the table at scrape time, nothing counted per query.
    yield GaugeMetricFamily(PREFIX + "health_containers_not_ready", "Running containers whose "
                            "healthcheck says starting or unhealthy",
                            value=sum(1 for c in containers if not c.ready))
    yield GaugeMetricFamily(PREFIX + "health_failed_over_names", "Names on a network whose "
                            "first-registered holder is not ready while another is: answered "
                            "by a later holder (unless --ignore-health)", value=failed_over)


def tcp_families(clients: TcpClients) -> Iterator[Metric]:
    yield GaugeMetricFamily(PREFIX + "tcp_connections", "Open TCP connections",
                            value=len(clients))
    yield CounterMetricFamily(PREFIX + "tcp_accepted", "TCP connections let in",
                              value=clients.accepted)
    yield CounterMetricFamily(PREFIX + "tcp_refused", "TCP connections refused at the "
                              "per-source or total cap", value=clients.refused)


def build_info() -> Iterator[Metric]:
    try:
        version = metadata.version("scopedns")
    except metadata.PackageNotFoundError:
        version = "unknown"
    info = InfoMetricFamily(PREFIX + "build", "scopedns build")
    info.add_metric([], {"version": version, "python": platform.python_version()})
    yield info
