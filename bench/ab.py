# Two revisions of scopedns, same machine, same run, interleaved: is a change slower on the hot
# path? Both serve one synthetic snapshot (50 containers, no engine) on loopback, pinned to the
# same CPU, and dnsperf (on the other CPU) sends profile (a), local A without EDNS, at a fixed
# rate to each in turn, ABBA-ordered pairs so drift and warm-up hit both alike. Per pair: server
# CPU microseconds per answered query (utime+stime from /proc over the run) and the ratio
# new/base; then each side's saturation (highest qps at <= 0.1 % loss). The verdict compares
# the median ratio with a tolerance and says "inconclusive" when the pairs disagree more than
# the tolerance. Needs root for nothing; dnsperf and taskset from Debian.
#
#   python -m bench.ab --base REV [--pairs 6] [--seconds 6] [--rate 20000] [--tolerance 0.03]
#                         [--head-flags '--http 127.0.0.1:0'] [--base-flags ...]
# --head-flags, --base-flags: serve flags for one side only; with --base HEAD this measures
# what a flag costs (e.g. --http: every query counted, docs/operations.md).
# --together: on a machine others are loading, both sides are loaded at the same time (each
# at --rate, on the same server CPU), so that a burst of someone else's work hits both alike;
# saturation is then both sides at once, unlimited: the CPU is shared evenly between the two
# servers, so the one that costs less per query answers more (docs/performance.md).
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.suite.procs import (
    Cleanup,
    cpu_seconds,
    cpu_sets,
    pinned,
    stop,
    wait_answering,
)
from bench.suite.stats import parse_summary
from testkit.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
SATURATION_STEPS = (200_000, 140_000, 100_000, 70_000, 50_000, 35_000)


@dataclass
class Side:
    label: str
    tree: Path
    port: int = 0
    pid: int = 0
    flags: tuple[str, ...] = ()


def export_revision(revision: str, into: Path) -> Path:
    """`git archive` of `revision` (the code as committed, nothing else) into `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def make_snapshot(workdir: Path) -> tuple[Path, list[str]]:
    snapshot = workdir / "snapshot.json"
    subprocess.run([sys.executable, "-m", "bench.synth", "--containers", "50", "--networks",
                    "1", "--output", str(snapshot)], cwd=ROOT, check=True,
                   capture_output=True)
    manifest = json.loads(Path(f"{snapshot}.manifest.json").read_text())
    return snapshot, list(manifest["profiles"]["host"]["names"])


def launch(side: Side, snapshot: Path, server_cpu: str | None, cleanup: Cleanup,
           workdir: Path) -> None:
    side.port = free_port()
    argv = [sys.executable, "-m", "resolver", "serve", "--snapshot", str(snapshot),
            "--listen", f"127.0.0.1:{side.port}", "--no-upstream", "--log-level", "warning",
            *side.flags]
    with (workdir / f"{side.label}.log").open("ab") as log:
        # cwd and PYTHONPATH: `python -m resolver` imports that tree's package, not ours.
        process = subprocess.Popen(pinned(argv, server_cpu), cwd=side.tree, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, "PYTHONPATH": str(side.tree)},
                                   start_new_session=True)
    cleanup.push(f"stop {side.label}", lambda: stop(process))
    side.pid = process.pid


def dnsperf(side: Side, queries: Path, seconds: float, rate: float | None,
            client_cpu: str | None) -> tuple[float, float, float]:
    """(server CPU us per answered query, answered qps, loss) of one run."""
    argv = ["dnsperf", "-s", "127.0.0.1", "-p", str(side.port), "-d", str(queries),
            "-l", f"{seconds:g}", "-c", "4", "-q", "100" if rate is None else "20", "-t", "1"]
    if rate:
        argv += ["-Q", str(int(rate))]
    before = cpu_seconds([side.pid])
    out = subprocess.run(pinned(argv, client_cpu), capture_output=True, text=True,
                         timeout=seconds + 30, check=False).stdout
    used = cpu_seconds([side.pid]) - before
    summary = parse_summary(out)
    loss = summary.lost / summary.sent if summary.sent else 1.0
    return used / max(summary.completed, 1) * 1e6, summary.qps, loss


def together(sides: tuple[Side, Side], queries: Path, seconds: float, rate: float | None,
             client_cpu: str | None) -> dict[str, tuple[float, float, float]]:
    """dnsperf against both sides at once: each side's (CPU us per query, qps, loss)."""
    with ThreadPoolExecutor(len(sides)) as pool:
        runs = {side.label: pool.submit(dnsperf, side, queries, seconds, rate, client_cpu)
                for side in sides}
        return {label: run.result() for label, run in runs.items()}


def saturation(side: Side, queries: Path, seconds: float, client_cpu: str | None) -> float:
    for limit in SATURATION_STEPS:
        _, qps, loss = dnsperf(side, queries, seconds, limit, client_cpu)
        if loss <= 0.001:
            return qps
    return 0.0


def verdict(ratios: list[float], tolerance: float) -> str:
    middle = statistics.median(ratios)
    if max(ratios) - min(ratios) > 2 * tolerance:
        return f"inconclusive: the pairs spread {min(ratios):.3f}-{max(ratios):.3f}"
    if middle > 1 + tolerance:
        return f"slower by {middle - 1:.1%} (over the {tolerance:.0%} tolerance)"
    return f"within {tolerance:.0%} (median ratio {middle:.3f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rate", type=float, default=20_000.0)
    parser.add_argument("--tolerance", type=float, default=0.03)
    parser.add_argument("--head-flags", default="", help="extra serve flags for head only")
    parser.add_argument("--base-flags", default="", help="extra serve flags for base only")
    parser.add_argument("--together", action="store_true",
                        help="load both sides at the same time (a busy machine)")
    args = parser.parse_args(argv)
    server_cpu, client_cpu = cpu_sets()
    cleanup = Cleanup()
    with tempfile.TemporaryDirectory(prefix="scopedns-ab-") as temp:
        try:
            return compare(args, Path(temp), cleanup, server_cpu, client_cpu)
        finally:
            cleanup.run()


def compare(args: argparse.Namespace, workdir: Path, cleanup: Cleanup, server_cpu: str | None,
            client_cpu: str | None) -> int:
    base = Side("base", export_revision(args.base, Path(tempfile.mkdtemp(dir=workdir))),
                flags=tuple(shlex.split(args.base_flags)))
    head = Side("head", ROOT, flags=tuple(shlex.split(args.head_flags)))
    snapshot, names = make_snapshot(workdir)
    queries = workdir / "queries.txt"
    queries.write_text("".join(f"{name} A\n" for name in names))
    for side in (base, head):
        launch(side, snapshot, server_cpu, cleanup, workdir)
        wait_answering(side.port, names[0], 30.0)
    ratios = cpu_ratios(args, base, head, queries, client_cpu)
    if args.together:
        found = {label: run[1] for label, run in
                 together((base, head), queries, args.seconds, None, client_cpu).items()}
        print(f"saturation, both at once on one CPU: base {found['base']:,.0f} qps, head "
              f"{found['head']:,.0f} qps, ratio {found['head'] / max(found['base'], 1):.3f}")
    else:
        found = {side.label: saturation(side, queries, args.seconds, client_cpu)
                 for side in (base, head)}
        print(f"saturation: base {found['base']:,.0f} qps, head {found['head']:,.0f} qps")
    how = "simultaneous" if args.together else "interleaved"
    print(f"CPU per query, head/base over {args.pairs} {how} pairs at "
          f"{args.rate:,.0f} qps: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}): {verdict(ratios, args.tolerance)}")
    return 0


def cpu_ratios(args: argparse.Namespace, base: Side, head: Side, queries: Path,
               client_cpu: str | None) -> list[float]:
    """Head's CPU per query over base's, per pair; the order within a pair alternates."""
    ratios = []
    for pair in range(args.pairs):
        order = (base, head) if pair % 2 == 0 else (head, base)
        if args.together:
            runs = together(order, queries, args.seconds, args.rate, client_cpu)
            cpu = {label: run[0] for label, run in runs.items()}
        else:
            cpu = {side.label: dnsperf(side, queries, args.seconds, args.rate, client_cpu)[0]
                   for side in order}
        ratios.append(cpu["head"] / cpu["base"])
        print(f"pair {pair + 1}/{args.pairs}: base {cpu['base']:.1f} us/q, head "
              f"{cpu['head']:.1f} us/q, ratio {ratios[-1]:.3f}", flush=True)
    return ratios


if __name__ == "__main__":
    sys.exit(main())
