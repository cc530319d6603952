# The three measures of one running server on one profile, repeated `runs` times: saturation
# (highest qps with at most 0.1 % loss), server CPU microseconds per answered query at a fixed
# rate (utime+stime of the server's processes over the run / queries answered), and p50, p99
# and p99.9 latency of that same fixed-rate run, with the machine's steal share and load
# meanwhile. Medians with min and max are kept per measure.
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.suite.dnsperf import run_profile, saturation, write_query_files
from bench.suite.peers import Running
from bench.suite.procs import cpu_seconds
from bench.suite.profiles import Profile
from bench.suite.stats import (
    CpuTimes,
    DnsperfSummary,
    cpu_times,
    load_average,
    percentile,
    spread,
    steal_share,
)

MEASURES = ("saturation_qps", "cpu_us_per_query", "p50_us", "p99_us", "p999_us")


@dataclass(frozen=True)
class Settings:
    seconds: float  # saturation run length
    fixed_seconds: float  # fixed-rate run length
    runs: int
    rate: float  # the fixed rate, queries per second


class Progress:
    """One line per finished step on stdout, with elapsed time and a step counter."""

    def __init__(self, total_steps: int) -> None:
        self.total, self.done, self.began = total_steps, 0, time.monotonic()

    def step(self, text: str) -> None:
        self.done += 1
        self.say(f"[{self.done}/{self.total}] {text}")

    def say(self, text: str) -> None:
        minutes, seconds = divmod(int(time.monotonic() - self.began), 60)
        print(f"{minutes:3d}:{seconds:02d} {text}", flush=True)


def fixed_rate(profile: Profile, running: Running, files: list[Path], settings: Settings,
               pin: Callable[[list[str]], list[str]], log_dir: Path) -> dict[str, Any]:
    pids = running.pids()
    before = cpu_seconds(pids)
    result = run_profile(profile, running.target, files, settings.fixed_seconds, settings.rate,
                         True, pin, log_dir)
    used = cpu_seconds(pids) - before
    summary, latencies = result.summary, result.latencies
    record: dict[str, Any] = {
        "qps": summary.qps, "loss": summary.loss, "rcodes": summary.rcodes,
        "cpu_seconds": used,
        "cpu_us_per_query": used / summary.completed * 1e6 if summary.completed else None,
    }
    for key, fraction in (("p50_us", 0.5), ("p99_us", 0.99), ("p999_us", 0.999)):
        record[key] = percentile(latencies, fraction) * 1e6 if latencies else None
    return record


def one_run(profile: Profile, running: Running, files: list[Path], settings: Settings,
            pin: Callable[[list[str]], list[str]], log_dir: Path) -> dict[str, Any]:
    def attempt(limit: float | None) -> DnsperfSummary:
        return run_profile(profile, running.target, files, settings.seconds, limit, False,
                           pin, log_dir).summary

    found = saturation(attempt)
    record = fixed_rate(profile, running, files, settings, pin, log_dir)
    record["saturation_qps"] = found.qps
    record["saturation_attempts"] = [{"qps": a.qps, "loss": a.loss, "rcodes": a.rcodes}
                                     for a in found.attempts]
    return record


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"runs": runs}
    for measure in MEASURES:
        values = [run[measure] for run in runs if run.get(measure) is not None]
        found = spread(values)
        summary[measure] = found.as_dict() if found else None
    return summary


def measure_once(profile: Profile, running: Running, settings: Settings,
                 pin: Callable[[list[str]], list[str]], workdir: Path) -> dict[str, Any]:
    """One run of the three measures, with the machine's steal share and load meanwhile.
    Query files go to a directory of this server's own: another server may rewrite them."""
    directory = workdir / f"queries-{running.target.port}"
    directory.mkdir(exist_ok=True)
    files = write_query_files(profile, running.target, directory)
    before, load_before = machine_state()
    try:
        record = one_run(profile, running, files, settings, pin, workdir)
    except (ValueError, RuntimeError, OSError, subprocess.SubprocessError) as error:
        print(f"  {profile.key}: run failed: {error}", file=sys.stderr, flush=True)
        record = {"error": str(error)}
    after, load_after = machine_state()
    record["steal"] = steal_share(before, after)
    record["load1"] = max(load_before, load_after)
    return record


def machine_state() -> tuple[CpuTimes, float]:
    return (cpu_times(Path("/proc/stat").read_text()),
            load_average(Path("/proc/loadavg").read_text()))


def describe(record: dict[str, Any]) -> str:
    noise = (f"; steal {record['steal']:.1%}, load {record['load1']:.1f}"
             if "steal" in record else "")
    if "error" in record:
        return f"failed ({record['error']}){noise}"
    parts = [f"saturation {fmt(record['saturation_qps'], '{:,.0f}')} qps",
             f"cpu {fmt(record['cpu_us_per_query'], '{:.1f}')} us/q",
             f"p99 {fmt(record['p99_us'], '{:.0f}')} us",
             f"at {record['qps']:,.0f} qps, loss {record['loss']:.2%}"]
    return ", ".join(parts) + noise


def fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)
