"""Takeover figures (docs/takeover.md), as root on a machine with Docker, nft and conntrack.

`python -m bench.takeover engine --containers 100 [--cycles 500]` runs `scopedns serve
--takeover` limited to its own containers, starts busybox containers one after the other and
reports the delay from each container's `start` event to scopedns's "taken over" log line
(p50/p90/p99/max), scopedns's descriptors and RSS per taken-over container, and with --cycles
the descriptors, threads and RSS after that many start/stop cycles of one container.
`--containers 1000 --parallel 4 --restart`: the 1,000-container run (docs/takeover.md, "Cost"):
start them 4 at a time, then stop scopedns and time a new one taking all of them over.

`python -m bench.takeover synthetic --namespaces 1000` does the same for N network namespaces
made with `ip netns add` and Docker-like 127.0.0.11 rules (no dockerd load on a shared machine):
time to take them all over, descriptors, RSS, time to hand them all back. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")
IMAGE = "scopedns-busybox:test"


def sh(*argv: str, check: bool = True, input_text: str | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, input=input_text)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"n": len(ordered), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99),
            "max": round(ordered[-1], 2), "mean": round(statistics.fmean(ordered), 2)}


def proc_usage(pid: int) -> dict[str, int]:
    """Descriptors (not counting /dev/null placeholders of the low reserve), RSS, threads."""
    fds = 0
    for entry in os.listdir(f"/proc/{pid}/fd"):
        try:
            fds += os.readlink(f"/proc/{pid}/fd/{entry}") != os.devnull
        except OSError:
            continue
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"fds": fds, "rss_kib": int(fields["VmRSS"].split()[0]),
            "threads": int(fields["Threads"].strip())}


def nslookup_addresses(output: str) -> list[str]:
    found, in_answer = [], False
    for line in output.splitlines():
        if line.startswith("Name:"):
            in_answer = True
        elif in_answer and line.startswith("Address:"):
            found.append(line.split(None, 1)[1].strip())
    return found


def log_times(log: Path) -> dict[str, float]:
    """container name -> epoch seconds of its first 'taken over' line."""
    found: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if " taken over (" not in line:
            continue
        stamp = line[:23]
        name = line.split(": takeover: ", 1)[1].split(" taken over", 1)[0]
        when = time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:]) / 1e3
        found.setdefault(name, when)
    return found


def start_server(label: str, log: Path, expected: int = 0) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "resolver", "serve", "--takeover", "--takeover-only", label,
            "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9", "--log-level", "debug"]
    argv[argv.index("127.0.0.1:0")] = f"127.0.0.1:{_free_port()}"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30 + 0.1 * expected
    while "containers taken over" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("scopedns did not start:\n" + log.read_text()[-2000:])
        time.sleep(0.1)
    return proc


def _free_port() -> int:
    from testkit.ports import free_port

    port: int = free_port()
    return port


def wait_taken(log: Path, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not set(names) <= set(log_times(log)) and time.monotonic() < deadline:
        time.sleep(0.2)


def engine_run(args: argparse.Namespace) -> dict[str, Any]:
    tag = secrets.token_hex(3)
    label, net = f"scopedns-bench={tag}", f"tkbench-{tag}"
    log = Path(f"/tmp/tkbench-{tag}.log")
    sh(DOCKER, "network", "create", "--label", label, net)
    names: list[str] = []
    server = start_server(label, log)
    events = subprocess.Popen([DOCKER, "events", "--filter", f"label={label}", "--filter",
                               "event=start", "--format", "{{json .}}"],
                              stdout=subprocess.PIPE, text=True)
    result: dict[str, Any] = {"benchmark": "takeover-engine", "containers": args.containers}
    try:
        # Two holders of `app`: scopedns answers one address (first), Docker both. Each new
        # container asks `app` as its very first act: who answered its first query?
        for holder in ("hold-a", "hold-b"):
            names.append(f"tkbench-{tag}-{holder}")
            sh(DOCKER, "run", "-d", "--name", names[-1], "--label", label, "--network", net,
               "--network-alias", "app", "--dns", "127.0.0.1", IMAGE, "sleep", "3600")
        wait_taken(log, names, 30)
        before = proc_usage(server.pid)
        measured = [f"tkbench-{tag}-{i}" for i in range(args.containers)]
        names += measured
        began = time.monotonic()
        start_containers(measured, label, net, args.parallel)
        wait_taken(log, names, 30 + 0.1 * len(names))
        result["seconds_to_start_all"] = round(time.monotonic() - began, 1)
        first = [len(nslookup_addresses(sh(DOCKER, "logs", n))) for n in measured]
        result["first_query_answered_by"] = {"scopedns (1 address)": first.count(1),
                                             "docker (2 addresses)": first.count(2),
                                             "other": len(first) - first.count(1)
                                             - first.count(2)}
        after = proc_usage(server.pid)
        taken = log_times(log)
        events.terminate()
        started = {}
        for line in events.communicate()[0].splitlines():
            event = json.loads(line)
            started[event["Actor"]["Attributes"]["name"]] = event["timeNano"] / 1e9
        delays = [(taken[n] - started[n]) * 1000 for n in measured
                  if n in taken and n in started]
        # Negative: taken over at the endpoint's join, before the container's start event
        # (the container's process starts just before that event).
        result["start_event_to_takeover_ms"] = percentiles(delays)
        result["taken_over_before_start_event"] = sum(1 for d in delays if d < 0)
        result["taken_over"] = sum(1 for n in measured if n in taken)
        result["fds_per_container"] = round((after["fds"] - before["fds"]) / len(measured), 2)
        result["rss_kib_per_container"] = round((after["rss_kib"] - before["rss_kib"])
                                                / len(measured), 1)
        result["before"], result["after"] = before, after
        if args.cycles:
            result["cycles"] = cycles(args.cycles, tag, label, net, server.pid)
        if args.restart:
            server, result["restart"] = restart_server(server, label, log, names)
    finally:
        events.kill()
        stop_server(server, len(names))
        for name in [*names, f"tkbench-{tag}-cycle"]:
            sh(DOCKER, "rm", "-f", name, check=False)
        sh(DOCKER, "network", "rm", net, check=False)
    return result


def stop_server(server: subprocess.Popen[bytes], containers: int) -> None:
    """SIGTERM and wait for the hand-back (tens of ms per container under load); then kill."""
    server.terminate()
    try:
        server.wait(timeout=30 + 0.2 * containers)
    except subprocess.TimeoutExpired:
        print("scopedns did not hand back in time: killed", file=sys.stderr)
        server.kill()
        server.wait()


def start_containers(names: list[str], label: str, net: str, parallel: int) -> None:
    """`docker run` each (its first act: ask `app`), `parallel` at a time, with progress."""
    def run_one(name: str) -> None:
        sh(DOCKER, "run", "-d", "--name", name, "--label", label, "--network", net,
           "--dns", "127.0.0.1", IMAGE, "sh", "-c", "nslookup -type=a app; exec sleep 3600")

    with ThreadPoolExecutor(max(1, parallel)) as pool:
        for done, _ in enumerate(pool.map(run_one, names), 1):
            if done % 50 == 0 or done == len(names):
                print(f"started {done}/{len(names)} containers", file=sys.stderr, flush=True)


def restart_server(server: subprocess.Popen[bytes], label: str, log: Path,
                   names: list[str]) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """SIGTERM (hand every container back), then a new scopedns takes them all over again:
    how long each step took and the new server's usage."""
    began = time.monotonic()
    stop_server(server, len(names))
    handed_back = time.monotonic() - began
    began = time.monotonic()
    again = start_server(label, log.with_suffix(".restart.log"), len(names))
    wait_taken(log.with_suffix(".restart.log"), names, 60 + 0.1 * len(names))
    taken = set(log_times(log.with_suffix(".restart.log")))
    return again, {"hand_back_s": round(handed_back, 2),
                   "take_all_over_s": round(time.monotonic() - began, 2),
                   "taken_over": len(taken & set(names)), "usage": proc_usage(again.pid)}


def cycles(count: int, tag: str, label: str, net: str, pid: int) -> dict[str, Any]:
    """Start/stop one container `count` times; usage after 10 cycles and at the end."""
    name = f"tkbench-{tag}-cycle"
    sh(DOCKER, "create", "--name", name, "--label", label, "--network", net, "--dns",
       "127.0.0.1", IMAGE, "sleep", "3600")
    marks: dict[str, Any] = {}
    began = time.monotonic()
    for i in range(count):
        sh(DOCKER, "start", name)
        sh(DOCKER, "stop", "-t", "0", name)
        if i + 1 in (10, count):
            time.sleep(2)
            marks[f"after_{i + 1}"] = proc_usage(pid)
    marks["seconds"] = round(time.monotonic() - began, 1)
    return marks


def synthetic_run(args: argparse.Namespace) -> dict[str, Any]:
    from resolver.config import Config
    from resolver.table import NameTable
    from watchers.takeover import TakeoverManager
    from watchers.takeover_plan import Target, raise_descriptor_limit

    tag = secrets.token_hex(2)
    names = [f"tks{tag}-{i}" for i in range(args.namespaces)]
    rules = ("table ip nat {\n chain DOCKER_OUTPUT {\n"
             "  ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:40001\n"
             "  ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:40002\n }\n"
             " chain OUTPUT {\n  type nat hook output priority -100; policy accept;\n"
             "  ip daddr 127.0.0.11 jump DOCKER_OUTPUT\n }\n}\n")
    batch = "".join(f"netns add {n}\n" for n in names)
    sh("ip", "-batch", "-", input_text=batch)
    try:
        for n in names:
            sh("ip", "netns", "exec", n, "sh", "-c", "ip link set lo up && nft -f -",
               input_text=rules)
        raise_descriptor_limit()
        return asyncio.run(_synthetic(names, Config(), NameTable(), Target, TakeoverManager))
    finally:
        sh("ip", "-batch", "-", input_text="".join(f"netns del {n}\n" for n in names),
           check=False)


async def _synthetic(names: list[str], config: Any, table: Any, target: Any,
                     manager_type: Any) -> dict[str, Any]:
    manager = manager_type(table, config)
    before = proc_usage(os.getpid())
    began = time.monotonic()
    plans = [target(f"id{i}", name, f"/run/netns/{name}", f"10.{i // 65536}.{i // 256 % 256}."
                    f"{i % 256}") for i, name in enumerate(names)]
    diverted_at: list[float] = []

    async def watch() -> None:
        while len(manager.diversions) < len(plans):
            await asyncio.sleep(0.01)
        diverted_at.append(time.monotonic() - began)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(manager.take(plan) for plan in plans))
    took = time.monotonic() - began
    await asyncio.wait_for(watcher, 1)
    after = proc_usage(os.getpid())
    n = len(manager.diversions)
    held = list(manager.diversions.values())
    manager.diversions.clear()
    began = time.monotonic()
    await asyncio.gather(*(d.unhook() for d in held))
    unhooked = time.monotonic() - began
    await asyncio.gather(*(d.flush() for d in held))
    for diversion in held:
        diversion.close()
    released = time.monotonic() - began
    await manager.release_all()
    return {"benchmark": "takeover-synthetic", "namespaces": len(names), "taken_over": n,
            "all_diverted_s": round(diverted_at[0], 2),
            "all_diverted_and_flushed_s": round(took, 2),
            "all_tables_removed_s": round(unhooked, 2),
            "hand_back_with_flush_s": round(released, 2),
            "fds_per_namespace": round((after["fds"] - before["fds"]) / n, 2),
            "rss_kib_per_namespace": round((after["rss_kib"] - before["rss_kib"]) / n, 1),
            "before": before, "after": after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    modes = parser.add_subparsers(dest="mode", required=True)
    engine = modes.add_parser("engine")
    engine.add_argument("--containers", type=int, default=100)
    engine.add_argument("--cycles", type=int, default=0)
    engine.add_argument("--parallel", type=int, default=1,
                        help="docker run this many containers at a time (default 1)")
    engine.add_argument("--restart", action="store_true",
                        help="then stop scopedns and time a new one taking them all over")
    synthetic = modes.add_parser("synthetic")
    synthetic.add_argument("--namespaces", type=int, default=1000)
    args = parser.parse_args()
    result = engine_run(args) if args.mode == "engine" else synthetic_run(args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
