# Pure parsing and statistics for the benchmark suite: dnsperf's summary and its verbose
# per-response lines, /proc/<pid>/stat CPU ticks, percentiles, the median/min/max spread
# reported for every measure, and RSS per 1,000 containers from the scale rows. No I/O here:
# bench/tests/test_bench_parsing.py feeds it text.
from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

_SENT = re.compile(r"Queries sent:\s+(\d+)")
_COMPLETED = re.compile(r"Queries completed:\s+(\d+)")
_LOST = re.compile(r"Queries lost:\s+(\d+)")
_QPS = re.compile(r"Queries per second:\s+([\d.]+)")
_RUNTIME = re.compile(r"Run time \(s\):\s+([\d.]+)")
_RCODES = re.compile(r"Response codes:\s+(.*)")
_RCODE_ITEM = re.compile(r"([A-Z]+) (\d+) \(")
# `-v` prints one line per response: "> NOERROR name TYPE 0.000123" ("T" for a timeout).
_VERBOSE = re.compile(r"^> (\S+) \S+ \S+ ([\d.]+)$")


@dataclass(frozen=True)
class DnsperfSummary:
    """What one dnsperf run reports at its end."""

    sent: int
    completed: int
    lost: int
    qps: float
    runtime: float
    rcodes: dict[str, int] = field(default_factory=dict)

    @property
    def loss(self) -> float:
        """Fraction of sent queries that got no answer (0.0 when nothing was sent)."""
        return self.lost / self.sent if self.sent else 0.0


def parse_summary(text: str) -> DnsperfSummary:
    """The statistics block of dnsperf's output. Raises ValueError if it is missing."""

    def number(pattern: re.Pattern[str]) -> str:
        found = pattern.search(text)
        if found is None:
            raise ValueError(f"dnsperf output has no {pattern.pattern.split(':')[0]!r} line")
        return found.group(1)

    codes = _RCODES.search(text)
    rcodes = {name: int(count) for name, count in _RCODE_ITEM.findall(codes.group(1))} \
        if codes else {}
    return DnsperfSummary(sent=int(number(_SENT)), completed=int(number(_COMPLETED)),
                          lost=int(number(_LOST)), qps=float(number(_QPS)),
                          runtime=float(number(_RUNTIME)), rcodes=rcodes)


def sum_rcodes(parts: Sequence[DnsperfSummary]) -> dict[str, int]:
    rcodes: dict[str, int] = {}
    for part in parts:
        for name, count in part.rcodes.items():
            rcodes[name] = rcodes.get(name, 0) + count
    return rcodes


def merge_summaries(parts: Sequence[DnsperfSummary]) -> DnsperfSummary:
    """Several dnsperf runs one after another, seen as one run: the rate is what was
    answered over the time they took together."""
    rcodes = sum_rcodes(parts)
    completed = sum(p.completed for p in parts)
    runtime = sum(p.runtime for p in parts)
    qps = completed / runtime if runtime else 0.0
    return DnsperfSummary(sent=sum(p.sent for p in parts), completed=completed,
                          lost=sum(p.lost for p in parts), qps=qps, runtime=runtime,
                          rcodes=rcodes)


def merge_concurrent(parts: Sequence[DnsperfSummary]) -> DnsperfSummary:
    """Several dnsperf runs side by side (profile t), seen as one run: their rates add up
    and the run lasted as long as the longest of them."""
    return DnsperfSummary(sent=sum(p.sent for p in parts),
                          completed=sum(p.completed for p in parts),
                          lost=sum(p.lost for p in parts), qps=sum(p.qps for p in parts),
                          runtime=max((p.runtime for p in parts), default=0.0),
                          rcodes=sum_rcodes(parts))


def split(total: int, parts: int) -> list[int]:
    """`total` shared out over `parts` side-by-side runs, as evenly as whole numbers go, at
    least 1 each (dnsperf's -c and -q take no 0)."""
    share, rest = divmod(total, parts)
    return [max(1, share + (1 if index < rest else 0)) for index in range(parts)]


def parse_latencies(lines: Iterable[str]) -> list[float]:
    """Per-response latencies in seconds from dnsperf -v output; timeouts are not latencies."""
    latencies = []
    for line in lines:
        found = _VERBOSE.match(line.rstrip("\n"))
        if found and found.group(1) != "T":
            latencies.append(float(found.group(2)))
    return latencies


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in (0, 1]) of unsorted values. Raises on no values."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def cpu_ticks(stat_line: str) -> int:
    """utime + stime (clock ticks) from one /proc/<pid>/stat line. The command name may hold
    spaces and parentheses, so fields are counted after its last ')'."""
    fields = stat_line[stat_line.rindex(")") + 2:].split()
    # After the name: state(0) ppid(1) ... utime is field 14 of the line, index 11 here.
    return int(fields[11]) + int(fields[12])


def parent_pid(stat_line: str) -> int:
    """The ppid field of one /proc/<pid>/stat line."""
    return int(stat_line[stat_line.rindex(")") + 2:].split()[1])


@dataclass(frozen=True)
class Spread:
    """The median of several runs with their min and max."""

    median: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high}


def spread(values: Sequence[float]) -> Spread | None:
    """None when no run produced a value (a peer that failed every run)."""
    if not values:
        return None
    return Spread(statistics.median(values), min(values), max(values))


@dataclass(frozen=True)
class CpuTimes:
    """The machine's CPU time so far (all CPUs, clock ticks) and its part stolen by the
    hypervisor, from the first line of /proc/stat."""

    total: int
    steal: int


def cpu_times(proc_stat: str) -> CpuTimes:
    """`cpu  user nice system idle iowait irq softirq steal guest guest_nice`: guest time is
    already counted in user and nice, so the total is the first eight fields."""
    fields = proc_stat.splitlines()[0].split()
    if fields[0] != "cpu":
        raise ValueError("not /proc/stat: no 'cpu' line first")
    numbers = [int(value) for value in fields[1:9]]
    return CpuTimes(total=sum(numbers), steal=numbers[7] if len(numbers) > 7 else 0)


def steal_share(before: CpuTimes, after: CpuTimes) -> float:
    """Fraction of the machine's CPU time stolen between two readings (0.0 if none passed)."""
    elapsed = after.total - before.total
    return (after.steal - before.steal) / elapsed if elapsed > 0 else 0.0


def load_average(proc_loadavg: str) -> float:
    """The 1-minute load average from /proc/loadavg."""
    return float(proc_loadavg.split()[0])


def rss_per_thousand(rows: list[dict[str, Any]]) -> float | None:
    """Bytes of RSS per 1,000 containers: the slope from the smallest row to the largest."""
    measured = sorted((int(r["containers"]), int(r["rss_bytes"])) for r in rows
                      if "rss_bytes" in r)
    if len(measured) < 2 or measured[-1][0] == measured[0][0]:
        return None
    (small, small_rss), (large, large_rss) = measured[0], measured[-1]
    return (large_rss - small_rss) / (large - small) * 1000
