"""Fixtures for the real-engine tests: a `Lab` with a sidecar, scopedns and fake upstreams.

Layout (see README.md): a busybox sidecar sits on the default bridge and on every test network;
scopedns runs on the host inside the sidecar's network namespace on 0.0.0.0:53, forwarding to a
fake upstream on the sidecar's 127.0.0.1:5300. Clients use `--dns <gateway of their first
network>`, where another fake upstream listens on the host, so Docker's embedded DNS
(127.0.0.11, the oracle) forwards nowhere else. Nothing leaves the host.

Environment: CI=true turns "engine/server unavailable" skips into failures;
SCOPEDNS_IT_ORACLE_ONLY=1 runs the steps against Docker's 127.0.0.11 only (no scopedns);
SCOPEDNS_IT_SERVER_ARGS="--alias-order ordered" appends flags to the scopedns command line.
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from .harness import (
    DOCKER_DNS,
    LABEL,
    NO_REPLY,
    REPO_ROOT,
    Answer,
    Container,
    Engine,
    Network,
    Processes,
    container_ip,
    container_pid,
    dig,
    dig_batch,
    docker,
    engine_problem,
    ensure_image,
    fake_upstream_argv,
    forwarded,
    poll,
    tail,
)

SERVER_LISTEN = "0.0.0.0:53"
SIDECAR_UPSTREAM = "127.0.0.1:5300"
ORACLE_ONLY = os.environ.get("SCOPEDNS_IT_ORACLE_ONLY") == "1"
IN_CI = os.environ.get("CI") == "true"
EXTRA_SERVER_ARGS = os.environ.get("SCOPEDNS_IT_SERVER_ARGS", "")


def unavailable(reason: str) -> None:
    """Skip, or fail loudly in CI, where the engine must be there."""
    if IN_CI:
        pytest.fail(f"integration prerequisites missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def server_problem() -> str | None:
    proc = subprocess.run([sys.executable, "-m", "resolver", "serve", "--help"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        return f"`python -m resolver serve --help` fails: {proc.stderr.strip()[-300:]}"
    return None


@dataclass
class Lab:
    """One sidecar + scopedns + fake upstreams, and the checks that compare with Docker."""

    engine: Engine
    procs: Processes
    logs: Path
    sidecar: Container | None = None
    server_log: Path | None = None
    server_extra: tuple[str, ...] = ()
    networks: dict[str, Network] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)

    @property
    def upstream_log(self) -> Path:
        return self.logs / "sidecar-upstream-queries.jsonl"

    def start_sidecar(self) -> None:
        self.sidecar = self.engine.run("sidecar", "bridge")
        self.procs.start("sidecar-upstream", fake_upstream_argv(
            self.upstream_log, SIDECAR_UPSTREAM), netns_pid=self.sidecar_pid())

    def sidecar_pid(self) -> int:
        assert self.sidecar is not None
        return container_pid(self.sidecar.name)

    def add_network(self, base: str, subnet: IPv4Network | None = None,
                    options: Sequence[str] = ()) -> Network:
        """Create a network, attach the sidecar, start Docker's fake upstream on its gateway."""
        assert self.sidecar is not None
        net = self.engine.network(base, subnet, options)
        self.networks[net.name] = net
        docker("network", "connect", net.name, self.sidecar.name)
        self.procs.start(f"oracle-{net.name}", fake_upstream_argv(
            self.logs / f"oracle-{net.name}-queries.jsonl", f"{net.gateway}:53"))
        return net

    def start_server(self, *extra: str) -> None:
        """Start scopedns in the sidecar's netns; return once it answers (first sync done)."""
        if ORACLE_ONLY:
            return
        self.server_extra = extra
        argv = [sys.executable, "-m", "resolver", "serve", "--listen", SERVER_LISTEN,
                "--docker", "unix:///var/run/docker.sock", "--upstream", SIDECAR_UPSTREAM,
                "--log-level", "debug", *extra, *shlex.split(EXTRA_SERVER_ARGS)]

        def synced() -> bool:  # SERVFAIL until the first sync; the probe is forwarded after
            answer = dig(self.sidecar_pid(), "127.0.0.1", "ready-probe.invalid")
            return answer.rcode not in ("SERVFAIL", NO_REPLY)

        self.server_log = self.procs.start("scopedns", argv, netns_pid=self.sidecar_pid(),
                                           ready=synced, timeout=30)

    def start_extra_server(self, label: str, port: int, *last: str) -> None:
        """Another scopedns in the sidecar's netns on 0.0.0.0:`port`, with `last` after
        SCOPEDNS_IT_SERVER_ARGS (so `--alias-order ordered` wins); returns once synced."""
        argv = [sys.executable, "-m", "resolver", "serve", "--listen", f"0.0.0.0:{port}",
                "--docker", "unix:///var/run/docker.sock", "--upstream", SIDECAR_UPSTREAM,
                *shlex.split(EXTRA_SERVER_ARGS), *last]

        def synced() -> bool:
            probe = ("127.0.0.1", port, "ready-probe.invalid", "A")
            return dig_batch(self.sidecar_pid(), [probe])[0].rcode not in ("SERVFAIL", NO_REPLY)

        self.procs.start(label, argv, netns_pid=self.sidecar_pid(), ready=synced, timeout=30)

    def restart_server(self) -> None:
        if ORACLE_ONLY:
            return
        self.procs.stop("scopedns")
        self.start_server(*self.server_extra)

    def run(self, base: str, networks: Sequence[Network | str], *options: str) -> Container:
        """Run a client on networks[0] (--dns its gateway), then connect it to the rest."""
        names = [n.name if isinstance(n, Network) else n for n in networks]
        first = self.networks.get(names[0])
        box = self.engine.run(base, names[0], *options, dns=first.gateway if first else None)
        for name in names[1:]:
            docker("network", "connect", name, box.name)
        return box

    def server_for(self, client: Container, via: str | None = None) -> str:
        assert self.sidecar is not None
        return container_ip(self.sidecar.name, via or client.first_network)

    def ask(self, client: Container, name: str, qtype: str = "A", via: str | None = None,
            tcp: bool = False) -> Answer:
        return dig(container_pid(client.name), self.server_for(client, via), name, qtype, tcp)

    def expect(self, client: Container, name: str, qtype: str = "A", *,
               rcode: str = "NOERROR", rdata: Iterable[str] = (),
               docker_rdata: Iterable[str] | None = None, docker_rcode: str | None = None,
               oracle: bool = True, via: str | None = None, tcp: bool = False
               ) -> Answer | None:
        """Check scopedns's answer to `client`, then (oracle) Docker's 127.0.0.11 answer.

        `docker_rdata`/`docker_rcode` are Docker's expected answer when it differs (several
        holders: Docker gives every holder, scopedns the first; deliberate differences).
        Mismatches are collected, not raised, so one test reports every disagreement;
        `verify()` fails the test at its end.
        """
        want = Answer(rcode, frozenset(rdata), "")
        got = None
        if not ORACLE_ONLY:
            got = poll(lambda: self.ask(client, name, qtype, via, tcp), lambda a: a == want)
            self._record("scopedns", client.name, name, qtype + "/tcp" * tcp, want, got)
        if oracle:
            dwant = Answer(docker_rcode or rcode,
                           frozenset(rdata if docker_rdata is None else docker_rdata), "")
            pid = container_pid(client.name)
            dgot = poll(lambda: dig(pid, DOCKER_DNS, name, qtype, tcp), lambda a: a == dwant, 2.0)
            self._record("docker", client.name, name, qtype + "/tcp" * tcp, dwant, dgot)
            if got is not None and docker_rcode is None and not got.rdata <= dgot.rdata:
                self.mismatches.append(f"{client.name}: {name} {qtype}: scopedns {got} is not a "
                                       f"subset of docker {dgot}")
        return got

    def expect_host(self, name: str, *, rcode: str = "NOERROR", rdata: Iterable[str] = (),
                    server: str = "127.0.0.1", netns: bool = True) -> None:
        """Check scopedns from a non-container source: by default loopback inside the sidecar's
        netns (the host view); with netns=False, from the host itself to `server`."""
        if ORACLE_ONLY:
            return
        assert self.sidecar is not None
        want = Answer(rcode, frozenset(rdata), "")
        got = poll(lambda: dig(self.sidecar_pid() if netns else None, server, name),
                   lambda a: a == want)
        source = "sidecar-loopback" if netns else "host"
        self._record("scopedns", source, name, "A", want, got)

    def same_as_docker(self, client: Container, name: str, qtype: str = "A") -> Answer:
        """Differential check: scopedns must give exactly Docker's answer (rcode and set)."""
        theirs = dig(container_pid(client.name), DOCKER_DNS, name, qtype)
        if not ORACLE_ONLY:
            ours = poll(lambda: self.ask(client, name, qtype), lambda a: a == theirs)
            if ours != theirs:
                self.mismatches.append(f"[differ] {client.name} asks {name} {qtype}: "
                                       f"docker {theirs}, scopedns {ours}")
        return theirs

    def _record(self, who: str, client: str, name: str, qtype: str, want: Answer,
                got: Answer) -> None:
        if got != want:
            self.mismatches.append(f"[{who}] {client} asks {name} {qtype}: want {want}, got {got}")

    def forwarded(self, name: str, transport: str = "udp") -> bool:
        """Did scopedns forward `name` to its (fake) upstream over `transport`?"""
        return (name.lower().rstrip(".") + ".", transport) in forwarded(self.upstream_log)

    def verify(self) -> None:
        """Fail the current test if any expectation was not met."""
        if self.mismatches:
            report = self.report()
            self.mismatches.clear()
            pytest.fail(report, pytrace=False)

    def report(self) -> str:
        text = "\n".join(self.mismatches)
        if self.server_log is not None:
            alive = "alive" if self.procs.alive("scopedns") else "DEAD"
            text += f"\n--- scopedns ({alive}) log tail:\n" + tail(self.server_log, 25)
        return text


@pytest.fixture(scope="session")
def engine_ready() -> None:
    problem = engine_problem()
    if problem is None and not ORACLE_ONLY:
        problem = server_problem()
    if problem is not None:
        unavailable(problem)
    ensure_image()


@pytest.fixture(scope="module")
def lab(engine_ready: None, tmp_path_factory: pytest.TempPathFactory,
        request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A test module may set DOCKER_PREFIX: every container and network it makes starts so."""
    run_id = secrets.token_hex(3)
    logs = tmp_path_factory.mktemp(f"lab-{run_id}")
    prefix = str(getattr(request.module, "DOCKER_PREFIX", ""))
    the_lab = Lab(Engine(run_id, prefix), Processes(logs), logs)
    try:
        the_lab.start_sidecar()
        yield the_lab
    finally:
        the_lab.procs.stop()
        errors = the_lab.engine.cleanup()
        leftovers = docker("ps", "-aq", "--filter", f"label={LABEL}={run_id}", check=False)
        if errors or leftovers:
            print(f"integration cleanup problems: {errors} leftovers={leftovers.split()}")


@pytest.fixture()
def steps(lab: Lab) -> Iterator[Lab]:
    """Hand the lab to one test. The test ends with `lab.verify()`; if it raised before,
    the disagreements seen so far are printed with its report."""
    lab.mismatches.clear()
    yield lab
    if lab.mismatches:
        print("disagreements before the error:\n" + lab.report())
        lab.mismatches.clear()
