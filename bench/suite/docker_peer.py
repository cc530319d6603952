# Docker's embedded DNS as a peer: an `sbench-` network with a few busybox containers whose
# network aliases are exactly the names of the query files (so only local names are asked),
# dnsperf run inside the first container's network namespace (nsenter -n) against 127.0.0.11,
# and dockerd's CPU time. The containers use a fake upstream on the network's gateway as
# their --dns, so a forwarded name never leaves the host. Everything created is removed by the
# cleanup stack; the shared Docker lock is held only while this peer exists.
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


def docker(*args: str, timeout: float = 120.0) -> str:
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:2])}: {done.stderr.strip()}")
    return done.stdout.strip()


def hold_lock(cleanup: Cleanup) -> None:
    """The lock other Docker users of this machine take; released by the cleanup stack."""
    if not LOCK:
        return
    handle = open(LOCK, "a")  # noqa: SIM115 - closed by the cleanup stack
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"  waiting for the Docker lock {LOCK} (another Docker user holds it)", flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
    cleanup.push("release the Docker lock", handle.close)


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
    client_pid: int


def build_lab(names: Sequence[Endpoint], run_id: str, upstream_argv: list[str],
              workdir: Path, cleanup: Cleanup) -> Lab:
    network = f"{PREFIX}{run_id}"
    docker("network", "create", network)
    cleanup.push(f"remove network {network}", lambda: docker("network", "rm", network))
    gateway = json.loads(docker("network", "inspect", network))[0]["IPAM"]["Config"][0]["Gateway"]
    start([*upstream_argv, "--host", gateway, "--port", "53"], cleanup, workdir / "docker-up.log")
    aliases: list[list[str]] = [[] for _ in range(CONTAINERS)]
    for index, endpoint in enumerate(names):
        aliases[index % CONTAINERS] += [endpoint.container.lower(), endpoint.qualified.lower()]
    addresses, pids = [], []
    for index, held in enumerate(aliases):
        name = f"{network}-c{index}"
        argv = ["run", "-d", "--name", name, "--network", network, "--dns", gateway]
        for alias in held:
            argv += ["--network-alias", alias]
        docker(*argv, IMAGE, "sleep", str(LIFETIME))
        cleanup.push(f"remove container {name}", remover(name))
        state = json.loads(docker("inspect", name))[0]
        addresses.append(IPv4Address(state["NetworkSettings"]["Networks"][network]["IPAddress"]))
        pids.append(int(state["State"]["Pid"]))
    return Lab(network, gateway, tuple(addresses), pids[0])


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


def wait_answering(lab: Lab, qname: str) -> None:
    argv = ["nsenter", "-n", "-t", str(lab.client_pid), "dig", "+short", "+tries=1", "+time=1",
            "@127.0.0.11", qname]
    for _ in range(int(READY_SECONDS)):
        if subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip():
            return
    raise RuntimeError(f"Docker's embedded DNS does not answer {qname}")


def start_docker(names: Sequence[Endpoint], run_id: str, upstream_argv: list[str],
                 workdir: Path, cleanup: Cleanup) -> Running:
    """The caller holds the Docker lock (hold_lock) for as long as this peer runs."""
    lab = build_lab(names, run_id, upstream_argv, workdir, cleanup)
    wait_answering(lab, names[0].container.lower())
    pointers = ptr_rewrite(names, lab)

    def rewrite(line: str) -> str:
        qname, _, qtype = line.partition(" ")
        return f"{pointers.get(qname, qname)} {qtype}"

    target = Target("127.0.0.11", 53, from_clients=False, host_source=None,
                    prefix=("nsenter", "-n", "-t", str(lab.client_pid)), rewrite=rewrite)
    pid = dockerd_pid()
    notes = [f"{len(lab.addresses)} containers carry the query names as network aliases; "
             "every stream of (b) comes from one container; dockerd is not pinned"]
    return Running(target, lambda: [pid], 0.0, notes)
