# Docker's embedded DNS as a peer: an `sbench-` network with a few busybox containers whose
# network aliases are exactly the names of the query files (so only local names are asked),
# dnsperf run inside the first container's network namespace (nsenter -n) against 127.0.0.11,
# and dockerd's CPU time; profile (t) from the first two containers' namespaces at once. The
# containers use a fake upstream on the network's gateway as their --dns, so a forwarded name
# never leaves the host. The same lab, with other labels, serves scopedns --takeover
# (bench.suite.takeover_peer). Everything created is removed by the cleanup stack; the shared
# Docker lock is held only while a peer that needs it exists.
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import IO

from bench.suite.dnsperf import Target
from bench.suite.names import Endpoint
from bench.suite.peers import READY_SECONDS, Running
from bench.suite.procs import Cleanup, start

DOCKER = os.environ.get("DOCKER") or "/usr/bin/docker"
IMAGE = "scopedns-busybox:test"
PREFIX = "sbench-"
CONTAINERS = int(os.environ.get("BENCH_DOCKER_CONTAINERS", "5"))
LOCK = os.environ.get("BENCH_DOCKER_LOCK", "/tmp/scopedns-docker.lock")
SETUP = Path(__file__).resolve().parents[2] / "tests" / "setup"
LIFETIME = 3600  # the containers' `sleep`: they end on their own if cleanup never runs
# Docker's lab is never taken over, by our scopedns or any other (docs/takeover.md).
LEAVE_TO_DOCKER = "scopedns.takeover=false"
NETNS_STREAMS = 2  # container namespaces profile (t) asks at once


def docker(*args: str, timeout: float = 120.0) -> str:
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:2])}: {done.stderr.strip()}")
    return done.stdout.strip()


class _Held:
    """The lock file while any Docker peer runs: flock(2) locks belong to one open file, so a
    second open of it in this process would wait for the first forever."""

    handle: IO[str] | None = None
    users = 0


def hold_lock(cleanup: Cleanup) -> None:
    """The lock other Docker users of this machine take; released by the cleanup stack once
    the last peer that took it is stopped."""
    if not LOCK:
        return
    if _Held.users == 0:
        handle = open(LOCK, "a")  # noqa: SIM115 - closed by release_lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"  waiting for the Docker lock {LOCK} (another Docker user holds it)",
                  flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        _Held.handle = handle
    _Held.users += 1
    cleanup.push("release the Docker lock", release_lock)


def release_lock() -> None:
    _Held.users -= 1
    if _Held.users == 0 and _Held.handle is not None:
        _Held.handle.close()
        _Held.handle = None


def ensure_engine() -> str:
    """Engine and test image, through the project's setup scripts; the server version."""
    for script in ("start-docker.sh", "build-image.sh"):
        subprocess.run(["bash", str(SETUP / script)], check=True, timeout=300,
                       stdout=sys.stderr)
    return docker("version", "--format", "{{.Server.Version}}")


@dataclass(frozen=True)
class Lab:
    network: str
    gateway: str
    addresses: tuple[IPv4Address, ...]
    pids: tuple[int, ...]  # each container's process: nsenter -t PID reaches its namespace

    @property
    def client_pid(self) -> int:
        return self.pids[0]


def build_lab(names: Sequence[Endpoint], run_id: str, upstream_argv: list[str],
              workdir: Path, cleanup: Cleanup, labels: Sequence[str] = (LEAVE_TO_DOCKER,)) -> Lab:
    """A network and CONTAINERS busybox containers carrying `labels`, the names as their
    network aliases (shared out in turn)."""
    network = f"{PREFIX}{run_id}"
    docker("network", "create", network)
    cleanup.push(f"remove network {network}", lambda: docker("network", "rm", network))
    gateway = json.loads(docker("network", "inspect", network))[0]["IPAM"]["Config"][0]["Gateway"]
    start([*upstream_argv, "--host", gateway, "--port", "53"], cleanup,
          workdir / f"{network}-upstream.log")
    aliases: list[list[str]] = [[] for _ in range(CONTAINERS)]
    for index, endpoint in enumerate(names):
        aliases[index % CONTAINERS] += [endpoint.container.lower(), endpoint.qualified.lower()]
    addresses, pids = [], []
    for index, held in enumerate(aliases):
        name = f"{network}-c{index}"
        argv = ["run", "-d", "--name", name, "--network", network, "--dns", gateway]
        for label in labels:
            argv += ["--label", label]
        for alias in held:
            argv += ["--network-alias", alias]
        docker(*argv, IMAGE, "sleep", str(LIFETIME))
        cleanup.push(f"remove container {name}", remover(name))
        state = json.loads(docker("inspect", name))[0]
        addresses.append(IPv4Address(state["NetworkSettings"]["Networks"][network]["IPAddress"]))
        pids.append(int(state["State"]["Pid"]))
    return Lab(network, gateway, tuple(addresses), tuple(pids))


def remover(container: str) -> Callable[[], str]:
    return lambda: docker("rm", "-f", container)


def ptr_rewrite(names: Sequence[Endpoint], lab: Lab) -> dict[str, str]:
    """Snapshot reverse name -> the reverse name of the Docker container holding its names."""
    return {e.reverse: lab.addresses[i % len(lab.addresses)].reverse_pointer
            for i, e in enumerate(names)}


def dockerd_pid() -> int:
    done = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, check=False)
    if not done.stdout.split():
        raise RuntimeError("no dockerd process on this machine")
    return int(done.stdout.split()[0])


def in_netns(pid: int) -> tuple[str, ...]:
    return ("nsenter", "-n", "-t", str(pid))


def probes(names: Sequence[Endpoint], lab: Lab) -> list[tuple[str, str]]:
    """(name, the address it must resolve to) for the first and last endpoints' names, both
    forms: a server that finds the plain names but not the dotted ones shows up here."""
    picked = sorted({0, len(names) - 1})
    return [(name, str(lab.addresses[index % len(lab.addresses)])) for index in picked
            for name in (names[index].container.lower(), names[index].qualified.lower())]


def wait_answering(lab: Lab, names: Sequence[Endpoint],
                   who: str = "Docker's embedded DNS") -> None:
    """Until 127.0.0.11 answers the probe names right in every namespace profile (t) asks."""
    for pid in lab.pids[:NETNS_STREAMS]:
        for qname, address in probes(names, lab):
            argv = [*in_netns(pid), "dig", "+short", "+tries=1", "+time=1", "@127.0.0.11",
                    qname]
            for _ in range(int(READY_SECONDS)):
                done = subprocess.run(argv, capture_output=True, text=True, check=False)
                if address in done.stdout.split():
                    break
            else:
                raise RuntimeError(f"{who} does not answer {qname} with {address} in "
                                   f"{lab.network}")


def netns_target(lab: Lab, rewrite: Callable[[str], str] | None) -> Target:
    """127.0.0.11 from the first container's namespace; profile (t) from the first two."""
    return Target("127.0.0.11", 53, from_clients=False, host_source=None,
                  prefix=in_netns(lab.client_pid), rewrite=rewrite,
                  stream_prefixes=tuple(in_netns(pid) for pid in lab.pids[:NETNS_STREAMS]))


def start_docker(names: Sequence[Endpoint], run_id: str, upstream_argv: list[str],
                 workdir: Path, cleanup: Cleanup) -> Running:
    """The caller holds the Docker lock (hold_lock) for as long as this peer runs."""
    lab = build_lab(names, run_id, upstream_argv, workdir, cleanup)
    wait_answering(lab, names)
    pointers = ptr_rewrite(names, lab)

    def rewrite(line: str) -> str:
        qname, _, qtype = line.partition(" ")
        return f"{pointers.get(qname, qname)} {qtype}"

    target = netns_target(lab, rewrite)
    pid = dockerd_pid()
    notes = [f"{len(lab.addresses)} containers carry the query names as network aliases; "
             "every stream of (b) comes from one container, (t) from the first two at once; "
             f"labelled {LEAVE_TO_DOCKER} so no scopedns takes them over; dockerd is not "
             "pinned"]
    return Running(target, lambda: [pid], 0.0, notes)
