# Load a loopback server with dnsperf and measure what the targets name: server CPU
# microseconds per answered query at a fixed rate (utime+stime from /proc/<pid>/stat) and
# saturation throughput, for profile (a) local A hits without EDNS from the host view and (b) a
# realistic EDNS mix from a container view and the host view. Optionally samples the server
# with py-spy and prints the top frames. Every run is bounded by --seconds.
# Run: python -m bench.profile --profile a|b [--server scopedns,dnsmasq,/path/to/tree]
#      [--saturate] [--rate 20000] [--seconds 10] [--repeat N] [--py-spy FILE.txt]
# Needs dnsperf and dnsmasq (bash bench/install.sh) and py-spy (pip install -e '.[bench]').
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.loopback import (
    CLIENT_ADDRESS,
    HOST_ADDRESS,
    Running,
    queries,
    start_dnsmasq,
    start_scopedns,
)

TICKS = os.sysconf("SC_CLK_TCK")
SATURATION_CLIENTS = 4  # dnsperf -c 4 -q 100, as in the issue
SATURATION_OUTSTANDING = 100


@dataclass
class Load:
    completed: int
    lost: int
    qps: float
    cpu_seconds: float

    @property
    def cpu_us_per_query(self) -> float:
        return self.cpu_seconds * 1e6 / max(self.completed, 1)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / TICKS


def _dnsperf_argv(port: int, data: Path, source: str, edns: bool, rate: int | None,
                  clients: int, outstanding: int, seconds: int) -> list[str]:
    argv = ["dnsperf", "-s", HOST_ADDRESS, "-p", str(port), "-a", source, "-d", str(data),
            "-l", str(seconds), "-c", str(clients), "-q", str(outstanding), "-t", "2"]
    if rate is not None:
        argv += ["-Q", str(rate)]
    return argv + (["-e"] if edns else [])


def _streams(profile: str, workdir: Path) -> list[tuple[Path, str, bool]]:
    """(query file, source address, EDNS) per dnsperf process of the profile."""
    plan = [(HOST_ADDRESS, False)] if profile == "a" else [(HOST_ADDRESS, False),
                                                            (CLIENT_ADDRESS, True)]
    streams = []
    for source, container_view in plan:
        data = workdir / f"queries-{profile}-{source}.txt"
        data.write_text("\n".join(queries(profile, container_view)) + "\n")
        streams.append((data, source, profile == "b"))
    return streams


def _number(label: str, text: str) -> float:
    match = re.search(rf"{label}:\s+([\d.]+)", text)
    return float(match.group(1)) if match else 0.0


def _dnsperf(argvs: list[list[str]], seconds: int) -> list[str]:
    processes = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for argv in argvs]
    return [p.communicate(timeout=seconds + 30)[0] for p in processes]


def run_load(server: Running, profile: str, rate: int | None, seconds: int,
             workdir: Path, parallel: bool = False) -> Load:
    """dnsperf at `rate` qps (None: saturation, -c 4 -q 100). The sources of profile (b) take
    turns, each for its share of `seconds` at the whole rate: two dnsperf processes at once
    cost both servers ~50% more CPU per query on a 2-core box (scheduling, measured), which
    is the load generator's doing. `parallel` runs them at once, splitting rate and clients."""
    streams = _streams(profile, workdir)
    share = len(streams)
    before = cpu_seconds(server.pids)
    if parallel:
        argvs = [_dnsperf_argv(server.port, data, source, edns,
                               None if rate is None else rate // share,
                               max(1, SATURATION_CLIENTS // share),
                               SATURATION_OUTSTANDING // share, seconds)
                 for data, source, edns in streams]
        outputs = _dnsperf(argvs, seconds)
    else:
        turn = max(1, seconds // share)
        outputs = [out for data, source, edns in streams for out in _dnsperf(
            [_dnsperf_argv(server.port, data, source, edns, rate, SATURATION_CLIENTS,
                           SATURATION_OUTSTANDING, turn)], turn)]
    used = cpu_seconds(server.pids) - before
    completed = sum(int(_number("Queries completed", out)) for out in outputs)
    lost = sum(int(_number("Queries lost", out)) for out in outputs)
    rates = [_number("Queries per second", out) for out in outputs]
    qps = sum(rates) if parallel else sum(rates) / len(rates)
    return Load(completed, lost, qps, used)


def top_frames(raw: str, limit: int = 12, python_only: bool = False) -> list[tuple[str, float]]:
    """Share of samples per leaf frame from py-spy's raw (collapsed) output; `python_only`
    charges each sample to its innermost Python function (native frames below it fold in)."""
    leaves: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            frames = stack.split(";")
            if python_only:  # by function: "name (file.py:12)" -> "name (file.py)"
                frames = [re.sub(r":\d+\)$", ")", f) for f in frames
                          if ".py:" in f and "<frozen" not in f] or ["?"]
            leaves[frames[-1]] += int(count)
    total = sum(leaves.values()) or 1
    return [(frame, n / total) for frame, n in leaves.most_common(limit)]


def inclusive_frames(raw: str, limit: int = 12) -> list[tuple[str, float]]:
    """Share of samples in which a frame appears anywhere on the stack."""
    seen: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            total += int(count)
            for frame in set(stack.split(";")):
                seen[frame] += int(count)
    return [(frame, n / max(total, 1)) for frame, n in seen.most_common(limit)]


def profile_under_load(server: Running, profile: str, rate: int | None, seconds: int,
                       workdir: Path, out: Path) -> Load:
    """py-spy record --native -r 500 over the load; writes the raw stacks to `out`."""
    spy = subprocess.Popen(["py-spy", "record", "--native", "-r", "500", "-d", str(seconds),
                            "-f", "raw", "-o", str(out), "-p", str(server.pids[0])],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    load = run_load(server, profile, rate, seconds, workdir)
    spy.wait(timeout=seconds + 30)
    return load


def start_server(kind: str, workdir: Path) -> Running:
    """`scopedns` (this tree), `dnsmasq`, or a path: another scopedns tree (e.g. HEAD)."""
    if kind == "dnsmasq":
        return start_dnsmasq(workdir / "hosts")
    if kind == "scopedns":
        return start_scopedns()
    if kind == "scopedns-http":  # --http on: every query counted for /metrics
        return start_scopedns(http=True)
    return start_scopedns(tree=Path(kind))


def measure(kind: str, profile: str, rate: int | None, seconds: int, workdir: Path,
            spy: Path | None = None, parallel: bool = False) -> Load:
    server = start_server(kind, workdir)
    try:
        run_load(server, profile, rate, 2, workdir)  # warm caches
        if spy is not None:
            return profile_under_load(server, profile, rate, seconds, workdir, spy)
        return run_load(server, profile, rate, seconds, workdir, parallel)
    finally:
        server.stop()


def print_frames(raw: str) -> None:
    for title, rows in (("self", top_frames(raw)),
                        ("self, innermost Python frame", top_frames(raw, python_only=True)),
                        ("inclusive", inclusive_frames(raw))):
        print(f"top frames ({title}):")
        for frame, share in rows:
            print(f"  {share:6.1%}  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description="dnsperf load against a loopback server")
    parser.add_argument("--profile", choices=["a", "b"], default="a")
    parser.add_argument("--server", default="scopedns",
                        help="comma-separated, run in turn: scopedns, scopedns-http, dnsmasq "
                             "or a tree path")
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--saturate", action="store_true", help="-c 4 -q 100, no rate limit")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the servers")
    parser.add_argument("--py-spy", dest="spy", type=Path, help="raw py-spy stacks to FILE")
    parser.add_argument("--parallel", action="store_true",
                        help="profile b: both sources at once (two dnsperf processes)")
    args = parser.parse_args()
    rate = None if args.saturate else args.rate
    mode = "saturation" if rate is None else f"-Q {rate}"
    results: dict[str, list[Load]] = {}
    with tempfile.TemporaryDirectory(prefix="scopedns-bench-") as tmp:
        for _ in range(args.repeat):
            for kind in args.server.split(","):
                load = measure(kind, args.profile, rate, args.seconds, Path(tmp), args.spy,
                               args.parallel)
                results.setdefault(kind, []).append(load)
                print(f"{kind} profile {args.profile} {mode}: {load.qps:,.0f} qps, "
                      f"{load.cpu_us_per_query:.1f} us CPU/query ({load.completed} answered, "
                      f"{load.lost} lost, {load.cpu_seconds:.2f} s CPU)", flush=True)
    if args.repeat > 1:
        for kind, loads in results.items():
            print(f"median {kind}: {statistics.median(x.qps for x in loads):,.0f} qps, "
                  f"{statistics.median(x.cpu_us_per_query for x in loads):.1f} us CPU/query")
    if args.spy is not None and args.spy.exists():
        print_frames(args.spy.read_text())


if __name__ == "__main__":
    main()
