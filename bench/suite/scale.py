# The scale rows: scopedns alone on synthetic snapshots of several sizes (by default 50
# containers on 1 network and 10,000 on 1,000): time from start to the first answer (load), RSS
# once loaded, and CPU microseconds per answered query at the fixed rate on profile (a) from that
# snapshot. Every size's server runs at once and the fixed-rate runs take turns, ABBA, so that a
# machine that gets busier meanwhile hits every size alike; RSS per 1,000 containers is the slope
# between the smallest and the largest row (docs/performance.md).
#
#   python -m bench.suite.scale [--scale 50x1,1000x100,10000x1000] [--runs 3]
#       [--fixed-seconds 8] [--rate 20000] [--server 'python -m resolver']
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.suite import peers, profiles
from bench.suite.dnsperf import write_query_files
from bench.suite.facts import synthesize
from bench.suite.measure import Progress, Settings, describe, fixed_rate
from bench.suite.names import client, endpoints, neighbours
from bench.suite.procs import Cleanup, cpu_sets, pinned, rss_bytes
from bench.suite.stats import rss_per_thousand, spread

FAILURES = (RuntimeError, OSError, ValueError, subprocess.SubprocessError)


@dataclass
class Started:
    """One size's server, loaded, with its query files; CPU per query of each run."""

    containers: int
    networks: int
    snapshot: Path
    synth_seconds: float
    running: peers.Running
    rss: int
    profile: profiles.Profile
    files: list[Path]
    cpu: list[float] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        found_cpu = spread(self.cpu)
        return {"containers": self.containers, "networks": self.networks,
                "load_seconds": self.running.load_seconds, "rss_bytes": self.rss,
                "snapshot_bytes": self.snapshot.stat().st_size,
                "synth_seconds": self.synth_seconds,
                "cpu_us_per_query": found_cpu.as_dict() if found_cpu else None}


def start_size(containers: int, networks: int, workdir: Path, server_cpu: str | None,
               cleanup: Cleanup, command: str) -> Started:
    began = time.monotonic()
    snapshot = synthesize(containers, networks, workdir)
    synth_seconds = time.monotonic() - began
    found = endpoints(json.loads(snapshot.read_text()))
    asker = client(found)
    world = peers.World(snapshot, found, asker, workdir, server_cpu)
    profile = profiles.local_hits(neighbours(found, asker))
    running = peers.start_scopedns(world, cleanup, command=command,
                                   label=f"scopedns-{containers}x{networks}")
    rss = rss_bytes(running.pids())
    directory = workdir / f"scale-{running.target.port}"
    directory.mkdir(exist_ok=True)
    files = write_query_files(profile, running.target, directory)
    return Started(containers, networks, snapshot, synth_seconds, running, rss, profile, files)


def scale_rows(scale: list[tuple[int, int]], workdir: Path, settings: Settings,
               server_cpu: str | None, client_pin: Callable[[list[str]], list[str]],
               progress: Progress, cleanup: Cleanup,
               command: str = peers.SCOPEDNS) -> list[dict[str, Any]]:
    own = Cleanup()
    cleanup.push("stop scopedns (scale)", own.run)
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    started: list[Started] = []
    try:
        for containers, networks in scale:
            progress.say(f"scale row: scopedns on {containers} containers / {networks} networks")
            try:
                started.append(start_size(containers, networks, workdir, server_cpu, own,
                                          command))
            except FAILURES as error:
                progress.say(f"scale {containers}x{networks}: failed: {error}")
                rows[containers, networks] = {"containers": containers, "networks": networks,
                                              "error": str(error)}
        for index in range(settings.runs):
            for size in started if index % 2 == 0 else started[::-1]:
                record = fixed_rate(size.profile, size.running, size.files, settings,
                                    client_pin, workdir)
                if record["cpu_us_per_query"] is not None:
                    size.cpu.append(record["cpu_us_per_query"])
                progress.step(f"scale {size.containers}x{size.networks} run {index + 1}/"
                              f"{settings.runs}: " + describe({**record, "saturation_qps": None}))
    finally:
        own.run()
    rows.update({(size.containers, size.networks): size.as_row() for size in started})
    return [rows[size] for size in scale if size in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite.scale",
                                     description="the scale rows of make bench, alone")
    parser.add_argument("--scale", default="50x1,1000x100,10000x1000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fixed-seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=20_000.0)
    parser.add_argument("--server", default=os.environ.get("SCOPEDNS_BENCH_SERVER",
                                                           f"{sys.executable} -m resolver"),
                        help="the scopedns command (run from the current directory)")
    args = parser.parse_args(argv)
    scale = [(int(c), int(n)) for c, n in (item.split("x") for item in args.scale.split(","))]
    settings = Settings(args.fixed_seconds, args.fixed_seconds, args.runs, args.rate)
    server_cpu, client_cpus = cpu_sets()
    workdir = Path(tempfile.mkdtemp(prefix="scopedns-scale-"))
    cleanup = Cleanup()
    try:
        rows = scale_rows(scale, workdir, settings, server_cpu,
                          lambda argv: pinned(argv, client_cpus),
                          Progress(len(scale) * args.runs), cleanup, args.server)
    finally:
        cleanup.run()
        shutil.rmtree(workdir, ignore_errors=True)
    for row in rows:
        print(json.dumps(row))
    slope = rss_per_thousand(rows)
    if slope is not None:
        print(f"RSS per 1,000 containers: {slope / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
