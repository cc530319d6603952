"""The lab's takeover way (conftest.py, docs/takeover.md): scopedns runs as a host process with
`serve --takeover`, limited to this run's containers (takeover_lab.py), so a client's plain
`127.0.0.11:53` is answered by scopedns. Docker's own answer, the oracle, is asked from the same
namespace at the port Docker's DNAT sends `127.0.0.11:53` to, read from the namespace's ruleset
(not from scopedns). The host listener (`127.0.0.1:<port>`, the host view) forwards to a fake
upstream on the host.

Who answered is proven, not assumed:
- per answer: scopedns's own replies carry an OPT record (payload 1232) and TTL 0; Docker's
  own replies carry no OPT and TTL 600; relayed replies carry the upstream's OPT (8192). So an
  answer at 127.0.0.11:53 without an OPT came from Docker's resolver, and an oracle answer with
  payload 1232 came from scopedns (docs/differences.md #2, #7);
- in all: scopedns's query counter (`scopedns_queries_total`, /metrics) must equal the number
  of queries the test sent to scopedns, so a forwarded answer that Docker gave directly (the
  same bytes either way) is caught too.
"""

from __future__ import annotations

import re
import time
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from resolver.divert import DockerPorts, docker_ports, our_diversion_ports
from testkit.ports import free_port

from .harness import DOCKER_DNS, NO_REPLY, Answer, dig, fake_upstream_argv, run
from .takeover_lab import DOCKER_TTL, SCOPEDNS_TTL, TakeoverLab

SCOPEDNS_PAYLOAD = 1232  # docs/answers.md: the OPT of scopedns's own replies
NOT_TAKEN_OVER = "NOT-TAKEN-OVER"  # stands in for an rcode: the client was never taken over
TAKEOVER_WAIT = 10.0  # a new container is taken over at its join, at worst after its start
COUNT_WAIT = 3.0
_EDNS = re.compile(r"^; EDNS: version: \d+, flags:[^;]*; udp: (\d+)", re.MULTILINE)


def edns_payload(answer: Answer) -> int | None:
    """The UDP payload size of the reply's OPT record, or None when it has none."""
    found = _EDNS.search(answer.text)
    return int(found.group(1)) if found else None


def record_ttls(answer: Answer) -> set[int]:
    return {int(fields[1]) for fields in (line.split(None, 4) for line in
            answer.text.splitlines() if line and not line.startswith(";"))
            if len(fields) == 5 and fields[1].isdigit()}


def not_scopedns(answer: Answer) -> str | None:
    """Why a reply at a taken-over 127.0.0.11:53 cannot be scopedns's, or None."""
    if answer.rcode in (NO_REPLY, NOT_TAKEN_OVER):
        return None  # nobody's answer: the comparison reports it
    payload, ttls = edns_payload(answer), record_ttls(answer)
    if payload is None:
        return f"has no OPT record (TTLs {sorted(ttls)}): Docker's own resolver answered"
    if payload == SCOPEDNS_PAYLOAD and ttls - {SCOPEDNS_TTL}:
        return f"has TTLs {sorted(ttls)}, not scopedns's {SCOPEDNS_TTL}"
    return None


def not_docker(answer: Answer) -> str | None:
    """Why an oracle reply (Docker's port, asked directly) cannot be Docker's, or None."""
    if edns_payload(answer) == SCOPEDNS_PAYLOAD:
        return "carries scopedns's OPT (payload 1232): the oracle port is scopedns's"
    if edns_payload(answer) is None and record_ttls(answer) - {DOCKER_TTL}:
        return f"local, with TTLs {sorted(record_ttls(answer))}, not Docker's {DOCKER_TTL}"
    return None


@dataclass
class TakeoverWay:
    """scopedns under --takeover for the lab: who asks where, and the count of what it got."""

    tk: TakeoverLab
    asked: int = 0  # queries sent to this scopedns process (127.0.0.11:53, host listener)
    ports: dict[int, DockerPorts] = field(default_factory=dict)  # pid -> Docker's, once ours

    def start(self, *extra: str) -> None:
        """Start scopedns (and, once, the host listener's fake upstream); return once its
        first takeover pass is done."""
        if not self.tk.procs.alive("host-upstream"):
            self.tk.upstream = f"127.0.0.1:{free_port()}"
            self.tk.procs.start("host-upstream", fake_upstream_argv(
                self.tk.logs / "host-upstream-queries.jsonl", self.tk.upstream))
        self.tk.extra = ("--log-queries", *extra)
        self.tk.start_server()
        self.asked, self.ports = 0, {}

    def stop(self) -> str | None:
        """Check the count (a new process counts from zero), then stop scopedns."""
        problem = self.count_problem()
        self.tk.stop_server()
        return problem

    def docker_ports(self, pid: int) -> DockerPorts | None:
        """Docker's ports in `pid`'s namespace once our table is there too (waits for the
        takeover up to TAKEOVER_WAIT), else None."""
        if pid in self.ports:
            return self.ports[pid]
        deadline = time.monotonic() + TAKEOVER_WAIT
        while True:
            ruleset = run(["nsenter", "-n", "-t", str(pid), "nft", "list", "ruleset"],
                          check=False)
            found = docker_ports(ruleset)
            if found is not None and our_diversion_ports(ruleset) is not None:
                self.ports[pid] = found
                return found
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def endpoints(self, pid: int) -> tuple[tuple[str, int], tuple[str, int]] | None:
        """(Docker's resolver, scopedns) as `pid` reaches them, or None if not taken over.
        The caller counts what it sends to scopedns (`asked`)."""
        ports = self.docker_ports(pid)
        return None if ports is None else ((DOCKER_DNS, ports.udp), (DOCKER_DNS, 53))

    def ask(self, pid: int, name: str, qtype: str, tcp: bool) -> Answer:
        """The client's own 127.0.0.11:53, which is scopedns's."""
        if self.docker_ports(pid) is None:
            return Answer(NOT_TAKEN_OVER, frozenset(), "")
        self.asked += 1
        return dig(pid, DOCKER_DNS, name, qtype, tcp)

    def ask_docker(self, pid: int, name: str, qtype: str, tcp: bool) -> Answer:
        """Docker's resolver in the client's namespace, at its real port for the transport."""
        ports = self.docker_ports(pid)
        if ports is None:
            return Answer(NOT_TAKEN_OVER, frozenset(), "")
        return dig(pid, DOCKER_DNS, name, qtype, tcp, ports.tcp if tcp else ports.udp)

    def ask_host(self, name: str) -> Answer:
        """scopedns's host listener, from the host (the host view)."""
        self.asked += 1
        return dig(None, "127.0.0.1", name, port=self.tk.server_port)

    def counted(self) -> int:
        url = f"http://127.0.0.1:{self.tk.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as got:
            text = got.read().decode()
        return int(sum(sample.value for family in text_string_to_metric_families(text)
                       for sample in family.samples if sample.name == "scopedns_queries_total"))

    def count_problem(self) -> str | None:
        """None when scopedns counted exactly the queries sent to it."""
        deadline = time.monotonic() + COUNT_WAIT
        while (counted := self.counted()) < self.asked and time.monotonic() < deadline:
            time.sleep(0.1)  # a forward may still be on its way back
        if counted == self.asked:
            return None
        why = ("the rest were answered by another server" if counted < self.asked else
               "it was asked by someone else (the oracle?)")
        return (f"[takeover] scopedns counted {counted} queries, but {self.asked} were sent to "
                f"127.0.0.11:53 and its host listener: {why}")

    def forwarded(self, name: str, transport: str) -> bool:
        """Did scopedns forward `name` over `transport` (its query log, --log-queries)?"""
        log = self.tk.server_log.read_text(errors="replace") if self.tk.server_log else ""
        line = re.compile(rf" {re.escape(name.rstrip('.'))}\. \S+: \S+ \(forwarded, "
                          rf"{transport}\)$", re.MULTILINE | re.IGNORECASE)
        return line.search(log) is not None
