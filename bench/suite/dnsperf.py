# Driving dnsperf: one process per profile stream, in turn (or, for profile t, side by side,
# each in its own container's network namespace, sharing the clients and the rate), pinned to
# the client CPUs; the saturation search (highest qps with at most 0.1 % loss) and the
# fixed-rate run whose per-response latencies (-v) and the server's CPU time give the other
# two measures. Every run is bounded by -l seconds and a subprocess timeout.
from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.suite.profiles import Profile
from bench.suite.stats import (
    DnsperfSummary,
    merge_concurrent,
    merge_summaries,
    parse_latencies,
    parse_summary,
    split,
)

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
    for a server that names things differently (Docker's own PTR addresses). Servers asked
    inside containers also give one prefix per container namespace for profile t."""

    server: str
    port: int
    from_clients: bool
    host_source: str | None
    prefix: tuple[str, ...] = ()
    rewrite: Callable[[str], str] | None = None
    stream_prefixes: tuple[tuple[str, ...], ...] = ()


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
    measure each other); merged as one run. Profile t's streams run side by side instead."""
    if profile.netns:
        return run_side_by_side(profile, target, files, seconds, qps, verbose, pin, log_dir)
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


def side_by_side_argvs(profile: Profile, target: Target, files: Sequence[Path],
                       seconds: float, qps: float | None, verbose: bool) -> list[list[str]]:
    """One dnsperf per stream, each in its own container namespace for the whole `seconds`;
    together they have the clients, the outstanding queries and the rate of one stream."""
    count = len(profile.streams)
    if len(target.stream_prefixes) < count:
        raise ValueError(f"profile ({profile.key}) asks {count} container namespaces at once; "
                         f"this server is reached in {len(target.stream_prefixes)}")
    outstanding = SATURATION_OUTSTANDING if qps is None else FIXED_OUTSTANDING
    shares = zip(split(SATURATION_CLIENTS, count), split(outstanding, count),
                 split(int(qps), count) if qps else [None] * count, strict=True)
    return [dnsperf_argv(replace(target, prefix=prefix), None, queries, seconds, clients,
                         queued, rate, profile.edns, verbose)
            for prefix, queries, (clients, queued, rate)
            in zip(target.stream_prefixes, files, shares, strict=False)]


def run_side_by_side(profile: Profile, target: Target, files: Sequence[Path], seconds: float,
                     qps: float | None, verbose: bool, pin: Callable[[list[str]], list[str]],
                     log_dir: Path) -> StreamRun:
    outputs = [log_dir / f"dnsperf-{profile.key}-{index}.out"
               for index in range(len(profile.streams))]
    processes = []
    try:
        for argv, out in zip(side_by_side_argvs(profile, target, files, seconds, qps, verbose),
                             outputs, strict=True):
            with out.open("wb") as sink:
                processes.append(subprocess.Popen(pin(argv), stdout=sink,
                                                  stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL))
        for process in processes:
            process.wait(timeout=seconds + 30)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    texts = [out.read_text(errors="replace") for out in outputs]
    latencies = [value for text in texts for value in parse_latencies(text.splitlines())] \
        if verbose else []
    return StreamRun(merge_concurrent([parse_summary(text) for text in texts]), latencies)


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
