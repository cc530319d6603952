# What the suite gathers besides dnsperf runs: machine facts for the JSON (CPU, cores, kernel,
# memory, load), synthetic snapshots from `python -m bench.synth` (the snapshot helper's
# module), and the engine figures of `python -m bench.engine_latency` when that module exists.
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.suite.measure import Progress

REPO = Path(__file__).resolve().parents[2]
SYNTH = os.environ.get("SCOPEDNS_BENCH_SYNTH", f"{sys.executable} -m bench.synth")
ENGINE_TIMEOUT = 900  # seconds; engine_latency starts hundreds of containers
SYNTH_TIMEOUT = 300


def machine_facts() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpu": model, "cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
        "kernel": platform.release(), "memory_kib": int(memory),
        "python": platform.python_version(), "hostname": platform.node(),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def synthesize(containers: int, networks: int, directory: Path) -> Path:
    """A synthetic snapshot (bench.synth) with container addresses in 127.0.0.0/8."""
    output = directory / f"snapshot-{containers}x{networks}.json"
    if not output.exists():
        argv = [*SYNTH.split(), "--containers", str(containers), "--networks", str(networks),
                "--output", str(output)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SYNTH_TIMEOUT,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} failed: {done.stderr.strip()[-300:]}")
    return output


def engine_figures(wanted: str, progress: Progress) -> dict[str, Any]:
    """bench.engine_latency's JSON (it drives the real engine, under the Docker lock)."""
    if wanted.lower() in ("no", "0", "false"):
        return {"skipped": "BENCH_ENGINE=no"}
    if not (REPO / "bench" / "engine_latency.py").exists():
        return {"skipped": "bench/engine_latency.py does not exist yet"}
    progress.say("engine figures: python -m bench.engine_latency (progress on stderr)")
    lock = os.environ.get("BENCH_DOCKER_LOCK", "/tmp/scopedns-docker.lock")
    argv = [sys.executable, "-m", "bench.engine_latency",
            *os.environ.get("BENCH_ENGINE_ARGS", "").split()]  # e.g. "--containers 10 --sync 20"
    if lock:
        argv = ["flock", lock, *argv]
    began = time.monotonic()
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=ENGINE_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"skipped": f"bench.engine_latency took over {ENGINE_TIMEOUT} s"}
    if done.returncode != 0:
        return {"skipped": f"bench.engine_latency exited {done.returncode}"}
    try:
        figures: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {"skipped": "bench.engine_latency printed no JSON"}
    progress.say(f"engine figures done in {time.monotonic() - began:.0f} s")
    return figures
