# The servers under test that run on loopback: scopedns (from the working tree, loading the
# snapshot; also with --cache-size 0), dnsmasq (hosts file, --no-resolv; cache 10,000 or 0),
# unbound (local-data, no recursion), NSD (a root zone: the fast-authoritative reference) and
# aardvark-dns (its config directory). Each writes its config from the same snapshot names,
# starts pinned to the server CPU, and is stopped by the run's cleanup stack. Docker's embedded
# DNS lives in bench.suite.docker_peer, scopedns --takeover in bench.suite.takeover_peer.
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.suite import peerconf
from bench.suite.dnsperf import Target
from bench.suite.names import Endpoint
from bench.suite.procs import (
    Cleanup,
    pinned,
    process_tree,
    start,
    stop_pid,
    wait_answering,
)
from testkit.ports import free_port

READY_SECONDS = 60.0  # a 10,000-container snapshot must load within this
AARDVARK = "/usr/lib/podman/aardvark-dns"  # Debian installs it outside PATH
SCOPEDNS = os.environ.get("SCOPEDNS_BENCH_SERVER", ".venv/bin/scopedns")
# dnsmasq's largest cache, as scopedns's default --cache-size: every name of profile (d) fits.
DNSMASQ_CACHE = 10_000


@dataclass
class World:
    """What every peer is built from: the snapshot, its names, the client container."""

    snapshot: Path
    names: list[Endpoint]
    client: Endpoint
    workdir: Path
    server_cpu: str | None
    upstream_port: int | None = None


@dataclass
class Running:
    target: Target
    pids: Callable[[], list[int]]
    load_seconds: float
    notes: list[str] = field(default_factory=list)


def loopback_target(port: int) -> Target:
    return Target("127.0.0.1", port, from_clients=True, host_source="127.0.0.1")


def _launch(world: World, name: str, argv: list[str], port: int, cleanup: Cleanup,
            env: dict[str, str] | None = None) -> Running:
    """Start, wait until it answers the client's own name, and say how long that took."""
    process = start(pinned(argv, world.server_cpu), cleanup, world.workdir / f"{name}.log", env)
    loaded = wait_answering(port, world.client.container, READY_SECONDS, process)
    return Running(loopback_target(port), lambda: process_tree(process.pid), loaded)


def start_scopedns(world: World, cleanup: Cleanup, *extra: str, command: str = SCOPEDNS,
                   label: str = "") -> Running:
    port = free_port()
    upstream = ["--upstream", f"127.0.0.1:{world.upstream_port}"] if world.upstream_port \
        else ["--no-upstream"]
    argv = [*command.split(), "serve", "--snapshot", str(world.snapshot),
            "--listen", f"127.0.0.1:{port}", *upstream, "--log-level", "warning", *extra]
    label = label or ("scopedns-nocache" if extra else "scopedns")
    return _launch(world, label, argv, port, cleanup)


def start_scopedns_cache_off(world: World, cleanup: Cleanup) -> Running:
    return start_scopedns(world, cleanup, "--cache-size", "0")


def start_scopedns_http(world: World, cleanup: Cleanup) -> Running:
    """scopedns with `--http` on, so metrics counting runs in the packet path; compared with
    plain scopedns in the same rounds (docs/operations.md: the hot-path cost of metrics)."""
    return start_scopedns(world, cleanup, "--http", "127.0.0.1:0", label="scopedns-http")


def start_scopedns_baseline(world: World, cleanup: Cleanup) -> Running:
    """Another build of scopedns (BENCH_BASELINE: a command, e.g. main's code), so a change is
    measured against what it replaces in the same interleaved rounds."""
    command = os.environ.get("BENCH_BASELINE", "")
    if not command:
        raise ValueError("BENCH_BASELINE (the baseline server command) is not set")
    return start_scopedns(world, cleanup, command=command, label="scopedns-baseline")


def start_dnsmasq(world: World, cleanup: Cleanup, cache_size: int = DNSMASQ_CACHE) -> Running:
    port = free_port()
    hosts = world.workdir / "dnsmasq.hosts"
    hosts.write_text(peerconf.dnsmasq_hosts(world.names))
    argv = ["dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            f"--addn-hosts={hosts}", "--listen-address=127.0.0.1", "--bind-interfaces",
            f"--port={port}", "--pid-file=", "--log-facility=-",
            "--local=/#/",  # every other name is local: NODATA/NXDOMAIN, never REFUSED
            "--dns-forward-max=1024",  # as scopedns --max-forwards
            f"--cache-size={cache_size}"]
    if world.upstream_port:
        argv.append(f"--server=/invalid/127.0.0.1#{world.upstream_port}")
    return _launch(world, "dnsmasq" if cache_size else "dnsmasq-nocache", argv, port, cleanup)


def start_dnsmasq_cache_off(world: World, cleanup: Cleanup) -> Running:
    return start_dnsmasq(world, cleanup, cache_size=0)


def start_unbound(world: World, cleanup: Cleanup) -> Running:
    port = free_port()
    conf = world.workdir / "unbound.conf"
    conf.write_text(peerconf.unbound_conf(world.names, port, world.upstream_port))
    return _launch(world, "unbound", ["unbound", "-d", "-c", str(conf)], port, cleanup)


def start_nsd(world: World, cleanup: Cleanup) -> Running:
    port = free_port()
    directory = world.workdir / "nsd"
    directory.mkdir(exist_ok=True)
    (directory / "root.zone").write_text(peerconf.nsd_zone(world.names))
    conf = directory / "nsd.conf"
    conf.write_text(peerconf.nsd_conf(str(directory), port))
    return _launch(world, "nsd", ["nsd", "-d", "-c", str(conf)], port, cleanup)


def start_aardvark(world: World, cleanup: Cleanup) -> Running:
    port = free_port()
    directory = world.workdir / "aardvark"
    directory.mkdir(exist_ok=True)
    (directory / "sbench").write_text(peerconf.aardvark_network(world.names, "127.0.0.1"))
    # AARDVARK_NO_PROXY: a miss gets NXDOMAIN instead of going to the host's resolv.conf.
    argv = [AARDVARK, "--config", str(directory), "--port", str(port), "run"]
    # `run` forks: the parent exits once the child serves and wrote aardvark.pid.
    parent = start(pinned(argv, world.server_cpu), cleanup, world.workdir / "aardvark-dns.log",
                   {"AARDVARK_NO_PROXY": "1"})
    parent.wait(READY_SECONDS)
    pid = int((directory / "aardvark.pid").read_text().split()[0])
    cleanup.push(f"stop aardvark-dns (pid {pid})", lambda: stop_pid(pid, "aardvark-dns"))
    loaded = wait_answering(port, world.client.container, READY_SECONDS)
    notes = ["aardvark-dns 1.4 matches host-view names case-sensitively"]
    return Running(loopback_target(port), lambda: process_tree(pid), loaded, notes)


STARTERS: dict[str, Callable[[World, Cleanup], Running]] = {
    "scopedns": start_scopedns,
    "dnsmasq": start_dnsmasq,
    "unbound": start_unbound,
    "nsd": start_nsd,
    "aardvark-dns": start_aardvark,
    "scopedns-nocache": start_scopedns_cache_off,
    "dnsmasq-nocache": start_dnsmasq_cache_off,
    "scopedns-baseline": start_scopedns_baseline,
    "scopedns-http": start_scopedns_http,
}
# The peers that can take the forwarded profiles (c) and (d); the caches-off variants only
# take those, compared with each other (bench.suite.pairs).
CACHE_OFF = {"scopedns-nocache", "dnsmasq-nocache"}
FORWARDERS = {"scopedns", "dnsmasq", "unbound", "scopedns-baseline"} | CACHE_OFF
# The servers answering 127.0.0.11 inside containers' namespaces: the only ones that take
# profile (t), Docker's own path; scopedns --takeover takes nothing else.
IN_CONTAINERS = {"docker", "scopedns-takeover"}


def _first_line(argv: list[str], pattern: str = r".+") -> str:
    if shutil.which(argv[0]) is None and not Path(argv[0]).exists():
        return "missing"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    found = re.search(pattern, done.stdout + done.stderr)
    return found.group(0).strip() if found else "unknown"


def versions() -> dict[str, str]:
    return {
        "dnsperf": _first_line(["dnsperf", "-h"], r"Version [\d.]+"),
        "dnsmasq": _first_line(["dnsmasq", "--version"], r"Dnsmasq version \S+"),
        "unbound": _first_line(["unbound", "-V"], r"Version \S+"),
        "nsd": _first_line(["nsd", "-v"], r"NSD version \S+"),
        "aardvark-dns": _first_line([AARDVARK, "--version"], r"aardvark-dns \S+"),
    }
