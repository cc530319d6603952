"""The takeover tests' lab: scopedns as a host process with `serve --takeover`, limited to this
run's containers (`--takeover-only scopedns-test=<run id>`, so other users of the engine are
never touched), two test networks, and a fake upstream on each network's gateway that the
containers get as `--dns`, so Docker's resolver forwards nowhere else. Clients ask only their
own resolver: busybox `nslookup NAME` (no server), or dig at 127.0.0.11 inside their namespace.
Who answered shows in the TTL: scopedns answers with TTL 0, Docker with 600.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from testkit.ports import free_port

from .harness import (
    DOCKER_DNS,
    LABEL,
    Container,
    Engine,
    Network,
    Processes,
    container_pid,
    docker,
    engine_problem,
    fake_upstream_argv,
    forwarded,
    run,
)

SCOPEDNS_TTL, DOCKER_TTL = 0, 600
TABLE = "scopedns_takeover"


def takeover_problem() -> str | None:
    """Why the takeover tests cannot run here, or None."""
    problem = engine_problem()
    if problem:
        return problem
    if subprocess.run(["which", "nft"], capture_output=True, check=False).returncode:
        return "nft not installed (tests/setup/install-system.sh installs nftables)"
    return None


@dataclass(frozen=True)
class Reply:
    """dig's view of one reply from 127.0.0.11: rcode, (ttl, rdata) of the answers."""

    rcode: str
    records: tuple[tuple[int, str], ...]

    @property
    def rdata(self) -> set[str]:
        return {data for _, data in self.records}

    @property
    def ttls(self) -> set[int]:
        return {ttl for ttl, _ in self.records}


def parse_reply(output: str, qtype: str) -> Reply:
    rcode, records = "NOREPLY", []
    for line in output.splitlines():
        if "->>HEADER<<-" in line and "status:" in line:
            rcode = line.split("status:")[1].split(",")[0].strip()
        elif line and not line.startswith(";"):
            fields = line.split(None, 4)
            if len(fields) == 5 and fields[3].upper() == qtype.upper():
                records.append((int(fields[1]), fields[4].strip()))
    return Reply(rcode, tuple(sorted(records)))


def nslookup_addresses(output: str) -> list[str]:
    """Addresses busybox nslookup printed for the name (not the server's own line)."""
    found, in_answer = [], False
    for line in output.splitlines():
        if line.startswith("Name:"):
            in_answer = True
        elif in_answer and line.startswith("Address:"):
            found.append(line.split(None, 1)[1].strip())
    return found


@dataclass
class TakeoverLab:
    engine: Engine
    procs: Processes
    logs: Path
    net: Network | None = None
    other: Network | None = None
    server_log: Path | None = None
    server_port: int = 0
    http_port: int = 0
    starts: int = 0
    boxes: dict[str, Container] = field(default_factory=dict)
    extra: tuple[str, ...] = ()  # more scopedns flags, after ours
    upstream: str = "127.0.0.1:9"  # the host listener's: never asked by test_takeover.py

    @property
    def selector(self) -> str:
        return f"{LABEL}={self.engine.run_id}"

    @property
    def upstream_log(self) -> Path:
        return self.logs / "gateway-upstream.jsonl"

    def setup(self) -> None:
        self.net = self.engine.network("tka")
        self.other = self.engine.network("tkb")
        self.procs.start("gateway-upstream", fake_upstream_argv(
            self.upstream_log, f"{self.net.gateway}:53", f"{self.other.gateway}:53"))

    def argv(self) -> list[str]:
        self.server_port = self.server_port or free_port()
        self.http_port = self.http_port or free_port()
        return [sys.executable, "-m", "resolver", "serve", "--takeover",
                "--takeover-only", self.selector, "--listen", f"127.0.0.1:{self.server_port}",
                "--http", f"127.0.0.1:{self.http_port}",
                "--upstream", self.upstream,
                "--log-level", "debug", *self.extra]

    def start_server(self) -> None:
        """Start scopedns and return once its first takeover pass is done."""
        self.starts += 1
        wanted = self.starts
        self.server_log = self.logs / "scopedns.log"

        def ready() -> bool:
            return self.server_log is not None and self.server_log.exists() and \
                self.server_log.read_text().count("containers taken over") >= wanted

        self.procs.start("scopedns", self.argv(), ready=ready, timeout=30)

    def signal_server(self, signum: int) -> float:
        """Send `signum` (a second SIGTERM is harmless); wait for the exit; seconds it took."""
        for label, proc in self.procs.procs:
            if label == "scopedns":
                began = time.monotonic()
                if proc.poll() is None:
                    proc.send_signal(signum)
                proc.wait(timeout=15)
                self.procs.procs.remove((label, proc))
                return time.monotonic() - began
        raise AssertionError("scopedns is not running")

    def stop_server(self) -> float:
        return self.signal_server(signal.SIGTERM)

    def box(self, base: str, *options: str, network: Network | str | None = None,
            command: tuple[str, ...] = ("sleep", "3600")) -> Container:
        net = network or self.net
        assert net is not None and self.net is not None
        name = net.name if isinstance(net, Network) else net
        return self.engine.run(base, name, *options, dns=self.net.gateway, command=command)

    def nslookup(self, box: Container | str, name: str) -> tuple[int, str]:
        who = box.name if isinstance(box, Container) else box
        proc = subprocess.run(["/usr/bin/docker", "exec", who, "nslookup", name],
                              capture_output=True, text=True, timeout=30, check=False)
        return proc.returncode, proc.stdout + proc.stderr

    def dig(self, box: Container | str, name: str, qtype: str = "A", tcp: bool = False
            ) -> Reply:
        """Ask the container's own 127.0.0.11:53 from inside its namespace."""
        who = box.name if isinstance(box, Container) else box
        argv = ["nsenter", "-n", "-t", str(container_pid(who)), "dig", "+tries=1", "+time=2",
                "+noall", "+comments", "+answer", "+tcp" if tcp else "+notcp",
                f"@{DOCKER_DNS}", name, qtype]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
        return parse_reply(proc.stdout, qtype)

    def answerer(self, box: Container | str, probe: str) -> str:
        """'scopedns' or 'docker', from the TTL of `probe` (a local name)."""
        reply = self.dig(box, probe)
        if reply.ttls == {SCOPEDNS_TTL}:
            return "scopedns"
        if reply.ttls == {DOCKER_TTL}:
            return "docker"
        return f"neither: {reply}"

    def wait_answerer(self, box: Container | str, probe: str, want: str,
                      timeout: float = 10.0) -> float:
        """Seconds until `want` answers `probe` in `box`; AssertionError after `timeout`."""
        began = time.monotonic()
        while True:
            got = self.answerer(box, probe)
            if got == want:
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise AssertionError(f"{want} never answered in {box}: {got}\n{self.tail()}")
            time.sleep(0.05)

    def our_tables(self, box: Container | str) -> str:
        """Our table in the container's namespace as nft lists it ("" when absent)."""
        who = box.name if isinstance(box, Container) else box
        key = docker("inspect", "-f", "{{.NetworkSettings.SandboxKey}}", who)
        if not key:
            return ""
        out = run(["nsenter", f"--net={key}", "nft", "list", "ruleset"], check=False)
        return out if TABLE in out else ""

    def forwarded(self, name: str) -> bool:
        return any(q == name.lower() + "." for q, _ in forwarded(self.upstream_log))

    def tail(self, lines: int = 30) -> str:
        if self.server_log is None or not self.server_log.exists():
            return ""
        return "--- scopedns log:\n" + "\n".join(
            self.server_log.read_text(errors="replace").splitlines()[-lines:])


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
LATENCY = "scopedns_takeover_latency_seconds"


def scrape(port: int) -> Samples:
    """scopedns's /metrics as {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as got:
        text = got.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def latency_summary(samples: Samples) -> str:
    """The takeover latency histogram in one line: count, mean, and the bucket counts."""
    count = samples.get((LATENCY + "_count", ()), 0)
    total = samples.get((LATENCY + "_sum", ()), 0.0)
    cumulative = sorted(((float(dict(labels)["le"]), value) for (name, labels), value
                         in samples.items() if name == LATENCY + "_bucket"))
    shown, below = [], 0.0
    for bound, running in cumulative:  # each bucket's own count, not Prometheus's running sum
        if running > below:
            shown.append(f"<={bound:g}s: {int(running - below)}")
        below = running
    mean = total / count if count else 0.0
    return f"{int(count)} timed, mean {mean:.3f}s ({', '.join(shown)})"


def jsonl(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def ptr_names(output: str) -> list[str]:
    return re.findall(r"name = (\S+)", output)
