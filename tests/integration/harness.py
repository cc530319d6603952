"""Helpers for the real-engine integration tests: docker CLI, dig inside a netns, processes.

Everything here talks to the real Docker engine through `/usr/bin/docker` and to DNS servers
through the host's `dig`, run inside a container's network namespace with `nsenter -n`.
Resources are labelled `scopedns-test=<run id>` and tracked by `Engine`, whose `cleanup()`
removes them; processes are tracked by `Processes`, whose `stop()` kills them.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, ip_network
from pathlib import Path

DOCKER = "/usr/bin/docker"
IMAGE = "scopedns-busybox:test"
LABEL = "scopedns-test"
REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_IMAGE = Path(__file__).resolve().parents[1] / "setup" / "build-image.sh"
DOCKER_DNS = "127.0.0.11"
POLL_TIMEOUT = 5.0  # the server learns from events: answers may lag a command by a moment
POLL_INTERVAL = 0.15
NO_REPLY = "NOREPLY"  # dig got nothing (timeout or ICMP refused); stands in for an rcode


class CommandError(RuntimeError):
    pass


def run(argv: Sequence[str], *, timeout: float = 60.0, check: bool = True) -> str:
    """Run a command, return its stdout; raise CommandError with stderr on failure."""
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise CommandError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def docker(*args: str, timeout: float = 60.0, check: bool = True) -> str:
    return run([DOCKER, *args], timeout=timeout, check=check).strip()


def engine_problem() -> str | None:
    """Why the real engine cannot be used here, or None if it can."""
    for tool in (DOCKER, "nsenter", "dig"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if os.geteuid() != 0:
        return "needs root (nsenter into container network namespaces)"
    try:
        docker("version", "--format", "{{.Server.Version}}", timeout=10)
    except (CommandError, subprocess.TimeoutExpired, OSError) as exc:
        return f"docker engine not reachable: {exc}"
    return None


def ensure_image() -> None:
    """Build the busybox image (tests/setup/build-image.sh: `docker import` of a static busybox
    rootfs) unless it exists."""
    built = subprocess.run(["bash", os.fspath(BUILD_IMAGE)], capture_output=True, text=True,
                           check=False, env={**os.environ, "DOCKER": DOCKER, "IMAGE": IMAGE})
    if built.returncode != 0:
        raise CommandError(f"building {IMAGE} failed: {built.stderr.strip()[-300:]}")


# --- DNS queries -------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What dig saw: the rcode (or NO_REPLY) and the rdata of answer records of the asked type."""

    rcode: str
    rdata: frozenset[str]
    text: str = field(compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.rcode} {sorted(self.rdata)}"


def dig(pid: int | None, server: str, name: str, qtype: str = "A", tcp: bool = False,
        port: int = 53) -> Answer:
    """Ask `server` (at `port`) from inside the network namespace of process `pid` (None: the
    host's).

    One try, 2 s: a missing reply shows as NO_REPLY rather than as a long wait. dig's defaults
    otherwise (EDNS with a cookie, RD); `tcp` asks over TCP.
    """
    prefix = ["nsenter", "-n", "-t", str(pid)] if pid is not None else []
    argv = [*prefix, "dig", "+tries=1", "+time=2", "+noall", "+comments", "+answer",
            "+tcp" if tcp else "+notcp", "-p", str(port), f"@{server}", name, qtype]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    return parse_dig(proc.stdout, qtype)


def parse_dig(output: str, qtype: str) -> Answer:
    rcode = NO_REPLY
    rdata: set[str] = set()
    for line in output.splitlines():
        if "->>HEADER<<-" in line and "status:" in line:
            rcode = line.split("status:")[1].split(",")[0].strip()
        elif line and not line.startswith(";"):
            fields = line.split(None, 4)
            if len(fields) == 5 and fields[3].upper() == qtype.upper():
                rdata.add(fields[4].strip())
    return Answer(rcode, frozenset(rdata), output)


def dig_batch(pid: int | None, queries: Sequence[tuple[str, int, str, str]]) -> list[Answer]:
    """Ask every (server, port, name, qtype) over UDP from inside the network namespace of
    `pid`, in order, with one `dig -f -` process for the whole batch: one try, 1 s each."""
    prefix = ["nsenter", "-n", "-t", str(pid)] if pid is not None else []
    batch = "".join(f"@{server} -p {port} {name} {qtype}\n" for server, port, name, qtype
                    in queries)
    argv = [*prefix, "dig", "+tries=1", "+time=1", "+noall", "+comments", "+answer", "+cmd",
            "+notcp", "-f", "-"]
    proc = subprocess.run(argv, input=batch, capture_output=True, text=True, check=False,
                          timeout=15 + 2 * len(queries))
    chunks = re.split(r"^; <<>> DiG .*$", proc.stdout, flags=re.MULTILINE)[1:]  # +cmd: one each
    if len(chunks) != len(queries):
        raise CommandError(f"dig batch: {len(queries)} queries, {len(chunks)} replies: "
                           f"{proc.stderr.strip()[-300:]}")
    return [parse_dig(chunk, query[3]) for chunk, query in zip(chunks, queries, strict=True)]


def poll(ask: Callable[[], Answer], until: Callable[[Answer], bool],
         timeout: float = POLL_TIMEOUT) -> Answer:
    """Ask until the answer satisfies `until` or time runs out; return the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = ask()
        if until(answer) or time.monotonic() >= deadline:
            return answer
        time.sleep(POLL_INTERVAL)


# --- Docker objects ------------------------------------------------------------------------


@dataclass(frozen=True)
class Network:
    name: str
    subnet: IPv4Network
    gateway: str

    def host(self, index: int) -> str:
        return str(self.subnet.network_address + index)


@dataclass(frozen=True)
class Container:
    name: str
    first_network: str  # the network whose gateway is its --dns (Docker's upstream)


def container_pid(name: str) -> int:
    pid = int(docker("inspect", "-f", "{{.State.Pid}}", name))
    if pid <= 0:
        raise CommandError(f"container {name} is not running")
    return pid


def container_ip(name: str, network: str) -> str:
    networks = json.loads(docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", name))
    address = (networks.get(network) or {}).get("IPAddress", "")
    if not address:
        raise CommandError(f"container {name} has no address on {network}")
    return str(address)


def used_subnets() -> list[IPv4Network]:
    """Subnets of every Docker network and every host route: a new one must avoid them."""
    found: list[IPv4Network] = []
    ids = docker("network", "ls", "-q").split()
    # check=False: a network removed between the listing and the inspect (the engine is
    # shared) only drops out of the output
    for line in docker("network", "inspect", "-f", "{{json .IPAM.Config}}", *ids,
                       check=False).splitlines():
        for config in json.loads(line) or []:
            subnet = ip_network(config.get("Subnet", "::/0"), strict=False)
            if isinstance(subnet, IPv4Network):
                found.append(subnet)
    for route in run(["ip", "-4", "route", "show"]).splitlines():
        head = route.split()[0]
        if head != "default":
            found.append(IPv4Network(head if "/" in head else f"{head}/32", strict=False))
    return found


def ula_subnet() -> str:
    """A random IPv6 ULA /64 for a dual-stack network (collisions: 1 in 65536)."""
    return f"fd00:5cd:{random.randint(0, 0xFFFF):x}::/64"


def free_subnet() -> IPv4Network:
    used = used_subnets()
    for _ in range(200):
        candidate = IPv4Network(f"10.{random.randint(200, 249)}.{random.randint(0, 255)}.0/24")
        if not any(candidate.overlaps(other) for other in used):
            return candidate
    raise CommandError("no free /24 found for a test network")


class Engine:
    """Creates uniquely named containers and networks and removes them all in cleanup()."""

    def __init__(self, run_id: str, prefix: str = "") -> None:
        self.run_id = run_id
        self.prefix = prefix  # a test module's own prefix for every Docker object it makes
        self.containers: list[str] = []
        self.networks: list[str] = []

    def unique(self, base: str) -> str:
        return f"{self.prefix}{base}-{self.run_id}"

    def network(self, base: str, subnet: IPv4Network | None = None,
                options: Sequence[str] = ()) -> Network:
        """`docker network create` a bridge with a free (or the given) IPv4 /24."""
        name = self.unique(base)
        for attempt in range(5):
            chosen = subnet or free_subnet()
            gateway = str(chosen.network_address + 1)
            try:
                docker("network", "create", "--driver", "bridge", "--subnet", str(chosen),
                       "--gateway", gateway, "--label", f"{LABEL}={self.run_id}", *options, name)
            except CommandError as exc:  # another network took it meanwhile: try again
                if subnet is not None or "overlap" not in str(exc) or attempt == 4:
                    raise
                continue
            self.networks.append(name)
            return Network(name, chosen, gateway)
        raise CommandError(f"could not create network {name}")

    def run(self, base: str, network: str, *options: str, dns: str | None = None,
            command: Sequence[str] = ("sleep", "3600"), start: bool = True) -> Container:
        """`docker run -d` (or only `create`) busybox as `<base>-<run id>` on `network`."""
        name = self.unique(base)
        argv = ["run", "-d"] if start else ["create"]
        argv += ["--name", name, "--network", network, "--label", f"{LABEL}={self.run_id}"]
        if dns:
            argv += ["--dns", dns]
        self.containers.append(name)
        docker(*argv, *options, IMAGE, *command)
        return Container(name, network)

    def cleanup(self) -> list[str]:
        """Remove every container, then every network; return the errors met."""
        errors: list[str] = []
        for name in reversed(self.containers):
            out = docker("rm", "-f", "-v", name, check=False, timeout=60)
            if name not in out and docker("ps", "-aq", "--filter", f"name=^{name}$"):
                errors.append(f"container {name} not removed")
        for name in reversed(self.networks):
            if docker("network", "inspect", name, check=False):
                try:
                    docker("network", "rm", name)
                except CommandError as exc:
                    errors.append(str(exc))
        return errors


# --- Processes -------------------------------------------------------------------------------


class Processes:
    """Background processes (optionally inside a netns) with their output in log files."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, label: str, argv: Sequence[str], *, netns_pid: int | None = None,
              ready: Callable[[], bool] | None = None, timeout: float = 15.0) -> Path:
        """Start argv; wait until `ready()` (or READY on stdout for the fake upstream)."""
        prefix = ["nsenter", "-n", "-t", str(netns_pid)] if netns_pid else []
        log_path = self.log_dir / f"{label}.log"
        with log_path.open("ab") as log:  # a restarted process appends to its log
            proc = subprocess.Popen([*prefix, *argv], stdout=log, stderr=subprocess.STDOUT,
                                    cwd=REPO_ROOT, start_new_session=True)
        self.procs.append((label, proc))
        check = ready or (lambda: b"READY" in log_path.read_bytes())
        deadline = time.monotonic() + timeout
        while not check():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise CommandError(f"{label} did not start (exit {proc.poll()}):\n"
                                   + tail(log_path))
            time.sleep(0.2)
        return log_path

    def alive(self, label: str) -> bool:
        return any(name == label and p.poll() is None for name, p in self.procs)

    def stop(self, label: str | None = None) -> None:
        """Terminate (then kill) the processes with this label, or all of them."""
        chosen = [p for name, p in self.procs if label is None or name == label]
        for proc in chosen:
            if proc.poll() is None:
                proc.terminate()
        for proc in chosen:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs = [(name, p) for name, p in self.procs if p not in chosen]


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def fake_upstream_argv(log: Path, *listens: str) -> list[str]:
    argv = [sys.executable, "-m", "tests.integration.fake_upstream", "--log", os.fspath(log)]
    for listen in listens:
        argv += ["--listen", listen]
    return argv


def forwarded(query_log: Path) -> list[tuple[str, str]]:
    """(lower-cased qname, transport) the fake upstream behind `query_log` was asked, in order."""
    if not query_log.exists():
        return []
    records = [json.loads(line) for line in query_log.read_text().splitlines()]
    return [(r["qname"].lower(), r["transport"]) for r in records]

