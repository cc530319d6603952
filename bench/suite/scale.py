# The scale rows: scopedns alone on a small and a large synthetic snapshot (50 containers on 1
# network, 10,000 on 1,000): time from start to the first answer (load), RSS once loaded, and
# CPU microseconds per answered query at the fixed rate on profile (a) from that snapshot.
from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.suite import peers, profiles
from bench.suite.dnsperf import write_query_files
from bench.suite.facts import synthesize
from bench.suite.measure import Progress, Settings, describe, fixed_rate
from bench.suite.names import client, endpoints, neighbours
from bench.suite.procs import Cleanup, rss_bytes
from bench.suite.stats import spread


def scale_row(containers: int, networks: int, workdir: Path, settings: Settings,
              server_cpu: str | None, client_pin: Callable[[list[str]], list[str]],
              progress: Progress, cleanup: Cleanup) -> dict[str, Any]:
    began = time.monotonic()
    snapshot = synthesize(containers, networks, workdir)
    synth_seconds = time.monotonic() - began
    found = endpoints(json.loads(snapshot.read_text()))
    asker = client(found)
    world = peers.World(snapshot, found, asker, workdir, server_cpu)
    profile = profiles.local_hits(neighbours(found, asker))
    own = Cleanup()
    cleanup.push("stop scopedns (scale)", own.run)
    try:
        running = peers.start_scopedns(world, own)
        rss = rss_bytes(running.pids())
        files = peers_files(profile, running, workdir)
        cpu = []
        for index in range(settings.runs):
            record = fixed_rate(profile, running, files, settings, client_pin, workdir)
            cpu.append(record["cpu_us_per_query"])
            progress.step(f"scale {containers}x{networks} run {index + 1}/{settings.runs}: "
                          + describe({**record, "saturation_qps": None}))
    finally:
        own.run()
    found_cpu = spread([c for c in cpu if c is not None])
    return {"containers": containers, "networks": networks,
            "load_seconds": running.load_seconds, "rss_bytes": rss,
            "snapshot_bytes": snapshot.stat().st_size, "synth_seconds": synth_seconds,
            "cpu_us_per_query": found_cpu.as_dict() if found_cpu else None}


def peers_files(profile: profiles.Profile, running: peers.Running, workdir: Path) -> list[Path]:
    directory = workdir / f"scale-{running.target.port}"
    directory.mkdir(exist_ok=True)
    return write_query_files(profile, running.target, directory)


def scale_rows(scale: list[tuple[int, int]], workdir: Path, settings: Settings,
               server_cpu: str | None, client_pin: Callable[[list[str]], list[str]],
               progress: Progress, cleanup: Cleanup) -> list[dict[str, Any]]:
    rows = []
    for containers, networks in scale:
        progress.say(f"scale row: scopedns on {containers} containers / {networks} networks")
        try:
            rows.append(scale_row(containers, networks, workdir, settings, server_cpu,
                                  client_pin, progress, cleanup))
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as error:
            progress.say(f"scale {containers}x{networks}: failed: {error}")
            rows.append({"containers": containers, "networks": networks, "error": str(error)})
    return rows
