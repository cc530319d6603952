# Driving dnsperf: one process per profile stream, in turn, pinned to the client CPUs;
# the saturation search (highest qps with at most 0.1 % loss) and the fixed-rate run whose
# per-response latencies (-v) and the server's CPU time give the other two measures.
# Every run is bounded by -l seconds and a subprocess timeout.
from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.suite.profiles import Profile
from bench.suite.stats import DnsperfSummary, merge_summaries, parse_latencies, parse_summary

MAX_LOSS = 0.001  # saturation: at most 0.1 % of queries unanswered
SATURATION_CLIENTS = 4  # dnsperf -c 4 -q 100
SATURATION_OUTSTANDING = 100
SEARCH_STEPS = 3  # unthrottled, then up to two runs at 90 % of what was answered
QUERY_TIMEOUT = 1  # dnsperf -t: a reply later than this counts as lost
FIXED_OUTSTANDING = 500  # -q at a fixed rate: enough never to throttle 20k qps


@dataclass(frozen=True)
class Target:
    """Where one server is asked: address, port, whether dnsperf sends from the streams'
    container addresses (loopback peers) and from where it sends the host's queries (None:
    dnsperf's default), a command prefix (nsenter for Docker), and a rewrite of query lines
    for a server that names things differently (Docker's own PTR addresses)."""

    server: str
    port: int
    from_clients: bool
    host_source: str | None
    prefix: tuple[str, ...] = ()
    rewrite: Callable[[str], str] | None = None


@dataclass
class StreamRun:
    summary: DnsperfSummary
    latencies: list[float] = field(default_factory=list)


def write_query_files(profile: Profile, target: Target, directory: Path) -> list[Path]:
    files = []
    for index, stream in enumerate(profile.streams):
        lines = [target.rewrite(line) if target.rewrite else line for line in stream.lines]
        path = directory / f"queries-{profile.key}-{index}.txt"
        path.write_text("\n".join(lines) + "\n")
        files.append(path)
    return files


def dnsperf_argv(target: Target, source: str | None, queries: Path, seconds: float,
                 clients: int, outstanding: int, qps: float | None, edns: bool,
                 verbose: bool) -> list[str]:
    argv = [*target.prefix, "dnsperf", "-s", target.server, "-p", str(target.port),
            "-d", str(queries), "-l", f"{seconds:g}", "-c", str(clients), "-q", str(outstanding),
            "-t", str(QUERY_TIMEOUT)]
    if source:
        argv += ["-a", source]
    if qps:
        argv += ["-Q", str(int(qps))]
    if edns:
        argv.append("-e")
    if verbose:
        argv.append("-v")
    return argv


def run_profile(profile: Profile, target: Target, files: Sequence[Path], seconds: float,
                qps: float | None, verbose: bool, pin: Callable[[list[str]], list[str]],
                log_dir: Path) -> StreamRun:
    """The streams one after another, each for an equal share of `seconds` with all the
    clients and the whole rate (side by side, two dnsperf processes on the client CPUs would
    measure each other); merged as one run."""
    share = seconds / len(profile.streams)
    outstanding = SATURATION_OUTSTANDING if qps is None else FIXED_OUTSTANDING
    summaries, latencies = [], []
    for index, (stream, queries) in enumerate(zip(profile.streams, files, strict=True)):
        source = stream.client if target.from_clients and stream.client else target.host_source
        argv = dnsperf_argv(target, source, queries, share,
                            SATURATION_CLIENTS, outstanding, qps, profile.edns, verbose)
        out = log_dir / f"dnsperf-{profile.key}-{index}.out"
        with out.open("wb") as sink:
            subprocess.run(pin(argv), stdout=sink, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=share + 30, check=False)
        text = out.read_text(errors="replace")
        summaries.append(parse_summary(text))
        if verbose:
            latencies += parse_latencies(text.splitlines())
    return StreamRun(merge_summaries(summaries), latencies)


@dataclass(frozen=True)
class Saturation:
    qps: float | None  # None: no attempt stayed within MAX_LOSS
    attempts: tuple[DnsperfSummary, ...]


def saturation(run: Callable[[float | None], DnsperfSummary]) -> Saturation:
    """Unthrottled first; while the loss is above MAX_LOSS, again at 90 % of what was
    answered. The answer is the best rate that stayed within the loss budget."""
    attempts: list[DnsperfSummary] = []
    limit: float | None = None
    for _ in range(SEARCH_STEPS):
        summary = run(limit)
        attempts.append(summary)
        if summary.completed and summary.loss <= MAX_LOSS:
            return Saturation(summary.qps, tuple(attempts))
        if not summary.completed:
            break
        limit = 0.9 * summary.qps
    return Saturation(None, tuple(attempts))
