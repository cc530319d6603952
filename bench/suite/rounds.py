# The measuring part of a run, interleaved: every server is started first and stays up; then
# each round measures every server once per profile, in turn, the order reversed every other
# round (A B, B A, A B, ...), so a machine that gets busier or quieter during the run weighs
# on every server alike and the ratio of one round compares like with like (bench.suite.pairs).
# Each measurement records the machine's steal share and load (bench.suite.measure).
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from bench.suite import docker_peer, peers, takeover_peer
from bench.suite.measure import Progress, Settings, aggregate, describe, measure_once
from bench.suite.procs import Cleanup
from bench.suite.profiles import Profile

STARTUP_ERRORS = (RuntimeError, OSError, ValueError, subprocess.SubprocessError)


def applies(name: str, profile: Profile) -> bool:
    """Forwarded profiles for the servers that forward; the caches-off variants only there;
    Docker's own path (t) for the servers answering inside containers, and scopedns
    --takeover only there."""
    if profile.netns or name == "scopedns-takeover":
        return profile.netns and name in peers.IN_CONTAINERS
    if profile.forwarded:
        return name in peers.FORWARDERS | {"docker"}
    return name not in peers.CACHE_OFF


def start_peer(name: str, world: peers.World, own: Cleanup) -> tuple[peers.Running,
                                                                     dict[str, Any]]:
    """Start one server; (how to reach it, the part of its results known at start)."""
    if name not in peers.IN_CONTAINERS:
        running = peers.STARTERS[name](world, own)
        return running, {"load_seconds": running.load_seconds, "notes": running.notes}
    docker_peer.hold_lock(own)
    version = docker_peer.ensure_engine()
    if name == "scopedns-takeover":
        running = takeover_peer.start_takeover(world, own)
    else:
        upstream = [sys.executable, "-m", "bench.suite.fake_upstream"]
        running = docker_peer.start_docker(world.names, str(os.getpid()), upstream,
                                           world.workdir, own)
        running.notes.append("dockerd's CPU time counts all its work during the run")
    return running, {"load_seconds": running.load_seconds, "notes": running.notes,
                     "version": version}


def run_rounds(names: list[str], world: peers.World, chosen: list[Profile], settings: Settings,
               client_pin: Callable[[list[str]], list[str]], progress: Progress,
               cleanup: Cleanup) -> dict[str, Any]:
    results: dict[str, Any] = {}
    running: dict[str, peers.Running] = {}
    stops: list[Cleanup] = []
    for name in names:
        own = Cleanup()
        cleanup.push(f"stop {name}", own.run)
        stops.append(own)
        progress.say(f"starting {name}")
        try:
            running[name], results[name] = start_peer(name, world, own)
        except STARTUP_ERRORS as error:
            progress.say(f"{name}: skipped: {error}")
            results[name] = {"error": str(error)}
            own.run()
    try:
        runs = measure_rounds(running, chosen, settings, client_pin, world, progress)
    finally:
        for own in reversed(stops):
            own.run()
    for name, per_profile in runs.items():
        for key, records in per_profile.items():
            results[name][key] = aggregate(records)
    return results


def measure_rounds(running: dict[str, peers.Running], chosen: list[Profile],
                   settings: Settings, client_pin: Callable[[list[str]], list[str]],
                   world: peers.World, progress: Progress) -> dict[str, dict[str, list[Any]]]:
    runs: dict[str, dict[str, list[Any]]] = {
        name: {p.key: [] for p in chosen if applies(name, p)} for name in running}
    for round_index in range(settings.runs):
        order = list(running) if round_index % 2 == 0 else list(running)[::-1]
        for profile in chosen:
            for name in order:
                if profile.key not in runs[name]:
                    continue
                record = measure_once(profile, running[name], settings, client_pin,
                                      world.workdir)
                record["round"] = round_index
                runs[name][profile.key].append(record)
                progress.step(f"round {round_index + 1}/{settings.runs} {name} "
                              f"({profile.key}): {describe(record)}")
    return runs
