# `make bench` (python -m bench.suite.run): one run that measures scopedns and its peers on the
# same snapshot names and query files, interleaved in rounds (bench.suite.rounds) and compared
# round by round (bench.suite.pairs), the scale rows, and the engine figures; writes
# bench/results/<date>.json, a PNG chart and the README's Benchmarks section. Shows progress
# as it goes; everything it starts or creates is removed at the end, on Ctrl-C and on error.
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench.suite import pairs, peers, profiles
from bench.suite.dnsperf import (
    FIXED_OUTSTANDING,
    QUERY_TIMEOUT,
    SATURATION_CLIENTS,
    SATURATION_OUTSTANDING,
)
from bench.suite.facts import engine_figures, machine_facts, synthesize
from bench.suite.measure import Progress, Settings
from bench.suite.names import Endpoint, client, endpoints, neighbours
from bench.suite.procs import (
    Cleanup,
    adopt_orphans,
    cpu_sets,
    pinned,
    start,
    wait_answering,
)
from bench.suite.report import publish
from bench.suite.rounds import applies, run_rounds
from bench.suite.scale import scale_rows
from testkit.ports import free_port

REPO = Path(__file__).resolve().parents[2]
ALL_PEERS = ("scopedns", "docker", "dnsmasq", "unbound", "aardvark-dns", "nsd",
             "scopedns-nocache", "dnsmasq-nocache", "scopedns-http", "scopedns-takeover",
             "scopedns-baseline")
MAIN_SNAPSHOT = (50, 1)  # containers, networks of the snapshot every peer serves
DNSPERF_SATURATION = (f"-c {SATURATION_CLIENTS} -q {SATURATION_OUTSTANDING} -t {QUERY_TIMEOUT}, "
                      "then -Q 90 % of what was answered while the loss is above 0.1 %")
DNSPERF_FIXED = f"-Q RATE -c {SATURATION_CLIENTS} -q {FIXED_OUTSTANDING} -t {QUERY_TIMEOUT} -v"
VIEW_CLIENTS = 3  # container views in profile (b), each from its own source address


def env_default(name: str, default: str) -> str:
    return os.environ.get(name) or default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="scopedns against its peers (make bench)")
    add = parser.add_argument
    add("--seconds", type=float, default=float(env_default("BENCH_SECONDS", "15")),
        help="saturation run length (BENCH_SECONDS, default 15)")
    add("--fixed-seconds", type=float, default=float(env_default("BENCH_FIXED_SECONDS", "0")),
        help="fixed-rate run length (BENCH_FIXED_SECONDS; default min(8, --seconds))")
    add("--runs", type=int, default=int(env_default("BENCH_RUNS", "3")),
        help="runs per measure (BENCH_RUNS, default 3)")
    add("--rate", type=float, default=float(env_default("BENCH_RATE", "20000")),
        help="the fixed rate in qps (BENCH_RATE, default 20000)")
    add("--peers", default=env_default("BENCH_PEERS", ",".join(ALL_PEERS[:-1])),
        help="comma-separated subset of " + ",".join(ALL_PEERS)
        + " (scopedns-baseline: the server command in BENCH_BASELINE, compared with scopedns)")
    add("--profiles", default=env_default("BENCH_PROFILES", "a,b,c,d,t"),
        help="comma-separated subset of a,b,c,d,t (t: Docker's own path, docker and "
        "scopedns-takeover only)")
    add("--scale", default=env_default("BENCH_SCALE", "50x1,10000x1000"),
        help="scale rows CONTAINERSxNETWORKS, comma-separated; 'none' to skip")
    add("--engine", default=env_default("BENCH_ENGINE", "yes"),
        help="include python -m bench.engine_latency (yes/no)")
    add("--output", type=Path, default=REPO / "bench" / "results")
    add("--readme", type=Path, default=REPO / "README.md")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    fixed = args.fixed_seconds or min(8.0, args.seconds)
    return Settings(seconds=args.seconds, fixed_seconds=fixed, runs=args.runs, rate=args.rate)


def start_upstream(workdir: Path, cleanup: Cleanup) -> int:
    port = free_port()
    start([sys.executable, "-m", "bench.suite.fake_upstream", "--port", str(port)], cleanup,
          workdir / "fake-upstream.log")
    wait_answering(port, "ready.bench.invalid", 30.0)
    return port


def count_steps(names: list[str], chosen: list[profiles.Profile], settings: Settings,
                scale: list[tuple[int, int]]) -> int:
    steps = sum(1 for name in names for p in chosen if applies(name, p))
    return (steps + len(scale)) * settings.runs


def parse_scale(text: str) -> list[tuple[int, int]]:
    if text in ("", "none", "no"):
        return []
    return [(int(c), int(n)) for c, n in (item.split("x") for item in text.split(","))]


def side_by_side(chosen: list[profiles.Profile]) -> dict[str, str]:
    """How profile (t) shares dnsperf's clients and the rate between namespaces, if asked."""
    netns = [p for p in chosen if p.netns]
    if not netns:
        return {}
    return {"side_by_side": f"({netns[0].key}): {len(netns[0].streams)} dnsperf at once, one per "
            "container namespace (nsenter -n), against 127.0.0.11:53; the -c, -q and -Q above "
            "shared out between them"}


def run_all(args: argparse.Namespace, workdir: Path, cleanup: Cleanup) -> dict[str, Any]:
    settings = settings_from(args)
    server_cpu, client_cpus = cpu_sets()
    snapshot = synthesize(*MAIN_SNAPSHOT, workdir)
    found = endpoints(json.loads(snapshot.read_text()))
    asker: Endpoint = client(found)
    served = neighbours(found, asker)
    views = [(e, neighbours(found, e)) for e in found[:VIEW_CLIENTS]]
    built = profiles.all_profiles(views)
    chosen = [built[key] for key in args.profiles.split(",") if key in built]
    names = [n for n in args.peers.split(",") if n in ALL_PEERS]
    scale = parse_scale(args.scale)
    progress = Progress(count_steps(names, chosen, settings, scale))
    progress.say(f"bench: {len(names)} servers x {len(chosen)} profiles x {settings.runs} runs, "
                 f"{settings.seconds:g} s saturation + {settings.fixed_seconds:g} s at "
                 f"{settings.rate:,.0f} qps; server CPU {server_cpu}, dnsperf CPU {client_cpus}")
    upstream_port = start_upstream(workdir, cleanup)
    world = peers.World(snapshot, found, asker, workdir, server_cpu, upstream_port)

    def client_pin(argv: list[str]) -> list[str]:
        return pinned(argv, client_cpus)

    results = run_rounds(names, world, chosen, settings, client_pin, progress, cleanup)
    return {
        "settings": {"seconds": settings.seconds, "fixed_seconds": settings.fixed_seconds,
                     "runs": settings.runs, "rate": settings.rate, "peers": names,
                     "profiles": {p.key: p.title for p in chosen},
                     "snapshot": {"containers": MAIN_SNAPSHOT[0], "networks": MAIN_SNAPSHOT[1],
                                  "names_asked": len(served),
                                  "client": str(asker.address)},
                     "pinning": {"server_cpu": server_cpu, "dnsperf_cpus": client_cpus},
                     "dnsperf": {"saturation": DNSPERF_SATURATION, "fixed": DNSPERF_FIXED,
                                 **side_by_side(chosen)}},
        "results": results,
        "pairs": pairs.pair_rows(results),
        "goals": pairs.goal_rows(results),
        "scale": scale_rows(scale, workdir, settings, server_cpu, client_pin, progress, cleanup),
        "engine_latency": engine_figures(args.engine, progress),
    }


def interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)
    signal.signal(signal.SIGTERM, interrupt)
    adopt_orphans()
    cleanup = Cleanup()
    workdir = Path(tempfile.mkdtemp(prefix="sbench-"))
    workdir.chmod(0o755)  # dnsmasq reads its hosts file after dropping to nobody
    if not os.environ.get("BENCH_KEEP"):
        cleanup.push(f"remove {workdir}", lambda: shutil.rmtree(workdir, ignore_errors=True))
    began = datetime.now(UTC)
    try:
        machine = machine_facts()
        body = run_all(args, workdir, cleanup)
    except KeyboardInterrupt:
        print("bench: interrupted; cleaning up", flush=True)
        return 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not stop cleanup
            signal.signal(signum, signal.SIG_IGN)
        cleanup.run()
    versions = peers.versions()
    for name in ("docker", "scopedns-takeover"):  # both read the engine's version
        if "version" in body["results"].get(name, {}):
            versions["docker"] = body["results"][name]["version"]
    document = {"date": began.isoformat(timespec="seconds"),
                "duration_seconds": round((datetime.now(UTC) - began).total_seconds()),
                "machine": machine, "versions": versions, **body}
    document["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    publish(document, args.output, args.readme, began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
