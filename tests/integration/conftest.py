"""Fixtures for the real-engine tests: a `Lab` with a sidecar, scopedns and fake upstreams.

Layout (see README.md): a busybox sidecar sits on the default bridge and on every test network;
scopedns runs on the host inside the sidecar's network namespace on 0.0.0.0:53, forwarding to a
fake upstream on the sidecar's 127.0.0.1:5300. Clients use `--dns <gateway of their first
network>`, where another fake upstream listens on the host, so Docker's embedded DNS
(127.0.0.11, the oracle) forwards nowhere else. Nothing leaves the host.

Two ways in (a module opts in to both with `LAB_WAYS = WAYS`; the `lab` fixture is then
parametrised): `direct`, as above, clients asking the sidecar's address; `takeover`, scopedns
as a host process with `serve --takeover` answering each client's own 127.0.0.11:53, and the
oracle asked at Docker's real port in the same namespace (takeover_way.py).

Environment: CI=true turns "engine/server unavailable" skips into failures;
SCOPEDNS_IT_ORACLE_ONLY=1 runs the steps against Docker's 127.0.0.11 only (no scopedns);
SCOPEDNS_IT_SERVER_ARGS="--alias-order ordered" appends flags to the scopedns command line;
SCOPEDNS_IT_WAYS="direct" runs only one way (default "direct takeover").
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
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
from .takeover_lab import TakeoverLab
from .takeover_way import TakeoverWay, not_docker, not_scopedns

SERVER_LISTEN = "0.0.0.0:53"
SIDECAR_UPSTREAM = "127.0.0.1:5300"
ORACLE_ONLY = os.environ.get("SCOPEDNS_IT_ORACLE_ONLY") == "1"
IN_CI = os.environ.get("CI") == "true"
EXTRA_SERVER_ARGS = os.environ.get("SCOPEDNS_IT_SERVER_ARGS", "")
DIRECT, TAKEOVER = "direct", "takeover"
WAYS = tuple(way for way in os.environ.get("SCOPEDNS_IT_WAYS", f"{DIRECT} {TAKEOVER}").split()
             if way == DIRECT or not ORACLE_ONLY)


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
    takeover: TakeoverWay | None = None  # the takeover way; None: direct

    @property
    def way(self) -> str:
        return DIRECT if self.takeover is None else TAKEOVER

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
        if self.takeover is not None:
            self.takeover.start(*extra, *shlex.split(EXTRA_SERVER_ARGS))
            self.server_log = self.takeover.tk.server_log
            return
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
        if self.takeover is not None:  # hands every container back; the count starts anew
            self._note(self.takeover.stop())
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
        """scopedns's answer to `client` (under takeover: its own 127.0.0.11, whatever `via`)."""
        if self.takeover is not None:
            return self.takeover.ask(container_pid(client.name), name, qtype, tcp)
        return dig(container_pid(client.name), self.server_for(client, via), name, qtype, tcp)

    def ask_docker(self, pid: int, name: str, qtype: str = "A", tcp: bool = False) -> Answer:
        """Docker's answer to the process `pid`: its 127.0.0.11 (under takeover, asked at
        Docker's own port there)."""
        if self.takeover is not None:
            return self.takeover.ask_docker(pid, name, qtype, tcp)
        return dig(pid, DOCKER_DNS, name, qtype, tcp)

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
            dgot = poll(lambda: self.ask_docker(pid, name, qtype, tcp), lambda a: a == dwant, 2.0)
            self._record("docker", client.name, name, qtype + "/tcp" * tcp, dwant, dgot)
            if got is not None and docker_rcode is None and not got.rdata <= dgot.rdata:
                self.mismatches.append(f"{client.name}: {name} {qtype}: scopedns {got} is not a "
                                       f"subset of docker {dgot}")
        return got

    def expect_host(self, name: str, *, rcode: str = "NOERROR", rdata: Iterable[str] = (),
                    server: str = "127.0.0.1", netns: bool = True) -> None:
        """Check scopedns from a non-container source: by default loopback inside the sidecar's
        netns (the host view; under takeover, the host listener); with netns=False, from the
        host itself to `server` (direct only)."""
        if ORACLE_ONLY:
            return
        assert self.sidecar is not None and (netns or self.takeover is None)
        want = Answer(rcode, frozenset(rdata), "")
        takeover = self.takeover
        got = poll(lambda: takeover.ask_host(name) if takeover is not None else
                   dig(self.sidecar_pid() if netns else None, server, name),
                   lambda a: a == want)
        source = "sidecar-loopback" if netns else "host"
        self._record("scopedns", source, name, "A", want, got)

    def same_as_docker(self, client: Container, name: str, qtype: str = "A") -> Answer:
        """Differential check: scopedns must give exactly Docker's answer (rcode and set)."""
        theirs = self.ask_docker(container_pid(client.name), name, qtype)
        self._record_origin("docker", client.name, name, qtype, theirs)
        if not ORACLE_ONLY:
            ours = poll(lambda: self.ask(client, name, qtype), lambda a: a == theirs)
            self._record_origin("scopedns", client.name, name, qtype, ours)
            if ours != theirs:
                self.mismatches.append(f"[differ] {client.name} asks {name} {qtype}: "
                                       f"docker {theirs}, scopedns {ours}")
        return theirs

    def _record(self, who: str, client: str, name: str, qtype: str, want: Answer,
                got: Answer) -> None:
        if got != want:
            self.mismatches.append(f"[{who}] {client} asks {name} {qtype}: want {want}, got {got}")
        self._record_origin(who, client, name, qtype, got)

    def _record_origin(self, who: str, client: str, name: str, qtype: str, got: Answer
                       ) -> None:
        """Under takeover: an answer that cannot have come from `who` (takeover_way.py)."""
        problem = self.origin_problem(who, got)
        if problem:
            self._note(f"[origin] {client} asks {name} {qtype}: {who}'s answer {problem}\n"
                       f"{got.text.strip()}")

    def _note(self, problem: str | None) -> None:
        if problem:
            self.mismatches.append(problem)

    def origin_problem(self, who: str, got: Answer) -> str | None:
        if self.takeover is None:
            return None
        return (not_docker if who == "docker" else not_scopedns)(got)

    def forwarded(self, name: str, transport: str = "udp") -> bool:
        """Did scopedns forward `name` to its (fake) upstream over `transport`? (Under
        takeover its upstream is Docker's resolver: its query log says.)"""
        if self.takeover is not None:
            return self.takeover.forwarded(name, transport)
        return (name.lower().rstrip(".") + ".", transport) in forwarded(self.upstream_log)

    def verify(self) -> None:
        """Fail the current test if any expectation was not met (under takeover: also if
        scopedns did not count every query sent to it)."""
        if self.takeover is not None:
            self._note(self.takeover.count_problem())
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module with `LAB_WAYS` runs every test that uses the lab once per way."""
    ways = getattr(metafunc.module, "LAB_WAYS", None)
    if ways and "lab" in metafunc.fixturenames:
        metafunc.parametrize("lab", ways, indirect=True, scope="module")


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
    """A test module may set DOCKER_PREFIX: every container and network it makes starts so.
    Parametrised (LAB_WAYS), the param is the way in: DIRECT or TAKEOVER."""
    way = getattr(request, "param", DIRECT)
    if way == TAKEOVER and shutil.which("nft") is None:
        unavailable("nft not installed (tests/setup/install-system.sh installs nftables)")
    run_id = secrets.token_hex(3)
    logs = tmp_path_factory.mktemp(f"lab-{way}-{run_id}")
    prefix = str(getattr(request.module, "DOCKER_PREFIX", ""))
    engine, procs = Engine(run_id, prefix), Processes(logs)
    the_lab = Lab(engine, procs, logs)
    if way == TAKEOVER:
        the_lab.takeover = TakeoverWay(TakeoverLab(engine, procs, logs))
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
