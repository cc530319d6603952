"""Health-aware failover and SRV records on the real engine (docs/health.md, docs/srv.md).

Health: two containers share the alias `db`, each with `--health-cmd 'test -f /ready'
--health-interval 1s --health-retries 1` (and a start period, so a container without /ready stays
`starting` until its first success); the test creates and removes /ready with `docker exec`.
Three scopedns servers watch: `first` (port 53), `ordered` (5354), and `--ignore-health` (5355),
all with `--domain zone.test`; Docker's 127.0.0.11 gives every holder throughout. A client whose
`--dns` is scopedns checks the forwarded zone through its own resolver (busybox nslookup).

SRV: `--expose 8080` and `-p`, a `scopedns.srv.http` label, two holders with priorities 0 and 1,
targets resolving to their holder, A and AAAA as additional data on a dual-stack network, TC over
UDP for an answer bigger than 512 bytes and the whole of it over TCP; unknown services get
NXDOMAIN and the fake upstream sees nothing. Every client's --dns is a local fake upstream.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TypeVar

import dns.flags
import dns.message
import dns.rcode
import pytest

from .conftest import ORACLE_ONLY, Lab
from .harness import (
    DOCKER_DNS,
    Answer,
    Container,
    container_ip,
    container_pid,
    dig,
    dig_batch,
    docker,
    forwarded,
    run,
    ula_subnet,
)

pytestmark = [pytest.mark.docker,
              pytest.mark.skipif(ORACLE_ONLY, reason="scopedns's own features")]

DOCKER_PREFIX = "sdhs-"
ZONE = "zone.test"
ORDERED_PORT, IGNORE_PORT = 5354, 5355
HEALTH = ("--health-cmd", "test -f /ready", "--health-interval", "1s", "--health-retries", "1",
          "--health-start-period", "60s")
SETTLE = 10.0  # a health change: one interval for the check, then the event and an inspect
T = TypeVar("T")


def until(ask: Callable[[], T], ok: Callable[[T], bool], timeout: float = SETTLE) -> T:
    """Ask until `ok` or time runs out; the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = ask()
        if ok(answer) or time.monotonic() >= deadline:
            return answer
        time.sleep(0.2)


def at(pid: int, server: str, port: int, name: str, qtype: str = "A") -> Answer:
    return dig_batch(pid, [(server, port, name, qtype)])[0]


def health(container: Container) -> str:
    return docker("inspect", "-f", "{{.State.Health.Status}}", container.name)


def set_ready(container: Container, ready: bool, status: str) -> None:
    docker("exec", container.name, *(["touch", "/ready"] if ready else ["rm", "-f", "/ready"]))
    until(lambda: health(container), lambda s: s == status, 15.0)


def nslookup(container: Container, name: str) -> frozenset[str]:
    """Addresses busybox nslookup prints through the container's own resolver."""
    out = docker("exec", container.name, "nslookup", name, check=False)
    body = out.split("\n\n", 1)[-1]
    return frozenset(line.split()[-1] for line in body.splitlines()
                     if line.startswith("Address") and "#" not in line and ":53" not in line)


@pytest.fixture(scope="module")
def servers(lab: Lab) -> Lab:
    """scopedns `first` (53), `ordered` and `--ignore-health`, all with the zone; networks
    made later are learned from events (the sidecar joins them)."""
    lab.add_network("first")
    lab.start_server("--domain", ZONE)
    lab.start_extra_server("ordered", ORDERED_PORT, "--domain", ZONE, "--alias-order", "ordered")
    lab.start_extra_server("ignore", IGNORE_PORT, "--domain", ZONE, "--ignore-health")
    return lab


def test_health_failover_and_fail_open(servers: Lab) -> None:
    lab = servers
    net = lab.add_network("hnet")
    client = lab.run("hclient", [net])
    h1 = lab.run("h1", [net], "--network-alias", "db", *HEALTH)
    h2 = lab.run("h2", [net], "--network-alias", "db", *HEALTH)
    ip1, ip2 = container_ip(h1.name, net.name), container_ip(h2.name, net.name)
    server, pid = lab.server_for(client), container_pid(client.name)
    zone_client = Container(lab.engine.run("hzone", net.name, dns=server).name, net.name)

    def check(phase: str, first: set[str], ordered: set[str]) -> None:
        for name in ("db", f"db.{net.name}", f"db.{ZONE}", f"db.{net.name}.{ZONE}"):
            for port, want in ((53, first), (ORDERED_PORT, ordered), (IGNORE_PORT, {ip1})):
                got = until(lambda n=name, p=port: at(pid, server, p, n),  # type: ignore[misc]
                            lambda a, w=want: a.rdata == w)  # type: ignore[misc]
                if got.rdata != want:
                    lab.mismatches.append(f"{phase}: {name} at :{port}: want {want}, got {got}")
        zone = until(lambda: nslookup(zone_client, f"db.{ZONE}"), lambda a: a == first)
        if zone != first:
            lab.mismatches.append(f"{phase}: forwarded zone db.{ZONE}: want {first}, got {zone}")
        docker_answer = dig(pid, DOCKER_DNS, "db")
        if docker_answer.rdata != {ip1, ip2}:
            lab.mismatches.append(f"{phase}: docker gives {docker_answer}")

    assert health(h1) == health(h2) == "starting"
    check("both starting: fail open", {ip1}, {ip1, ip2})
    set_ready(h2, True, "healthy")
    check("first starting, second healthy", {ip2}, {ip2})
    set_ready(h1, True, "healthy")
    check("both healthy", {ip1}, {ip1, ip2})
    set_ready(h1, False, "unhealthy")
    check("first unhealthy", {ip2}, {ip2})
    set_ready(h1, True, "healthy")
    check("first recovered", {ip1}, {ip1, ip2})
    set_ready(h1, False, "unhealthy")
    set_ready(h2, False, "unhealthy")
    check("both unhealthy: fail open", {ip1}, {ip1, ip2})
    # PTR and single-holder names ignore health
    lab.expect(client, h1.name, rdata=[ip1], oracle=False)
    reverse = ".".join(reversed(ip1.split("."))) + ".in-addr.arpa"
    lab.expect(client, reverse, "PTR", rdata=[f"{h1.name}.{net.name}."], oracle=False)
    lab.verify()


# ----- SRV -------------------------------------------------------------------------------------

_ASK = ("import sys, dns.message, dns.query\n"
        "q = dns.message.make_query(sys.argv[1], sys.argv[2])\n"
        "ask = dns.query.tcp if sys.argv[5] == '1' else dns.query.udp\n"
        "sys.stdout.write(ask(q, sys.argv[3], timeout=3, port=int(sys.argv[4])).to_wire().hex())")


def ask_wire(pid: int, server: str, name: str, qtype: str = "SRV", tcp: bool = False
             ) -> tuple[int, dns.message.Message]:
    """The whole reply (size, message) from inside the netns of `pid` (dnspython)."""
    out = run(["nsenter", "-n", "-t", str(pid), sys.executable, "-c", _ASK, name, qtype,
               server, "53", "1" if tcp else "0"], timeout=20)
    wire = bytes.fromhex(out)
    return len(wire), dns.message.from_wire(wire)


def records(reply: dns.message.Message, section: str = "answer") -> list[str]:
    return sorted(f"{rrset.name} {rd}" for rrset in getattr(reply, section) for rd in rrset)


def test_srv_records(servers: Lab) -> None:
    lab = servers
    net = lab.add_network("snet", options=["--ipv6", "--subnet", ula_subnet()])
    client = lab.run("sclient", [net])
    web1 = lab.run("web1", [net], "--network-alias", "web", "--expose", "8080",
                   "-p", "127.0.0.1::80", "--label", "scopedns.srv.http=80")
    web2 = lab.run("web2", [net], "--network-alias", "web", "--expose", "8080")
    server, pid = lab.server_for(client), container_pid(client.name)
    t1, t2 = f"{web1.name}.{net.name}.", f"{web2.name}.{net.name}."
    want = [f"_8080._tcp.web. 0 0 8080 {t1}", f"_8080._tcp.web. 1 0 8080 {t2}"]
    ok = until(lambda: ask_wire(pid, server, "_8080._tcp.web")[1],
               lambda r: records(r) == want)
    assert records(ok) == want, ok.to_text()
    addresses = set()
    for box in (web1, web2):
        inspect = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} "
                         "{{.GlobalIPv6Address}}{{end}}", box.name).split()
        addresses |= {f"{box.name}.{net.name}. {a}" for a in inspect}
    assert set(records(ok, "additional")) == addresses, ok.to_text()
    for name, expected in (("_80._tcp.web", [f"_80._tcp.web. 0 0 80 {t1}"]),
                           ("_http._tcp.web", [f"_http._tcp.web. 0 0 80 {t1}"])):
        assert records(ask_wire(pid, server, name)[1]) == expected
    target = dig(pid, server, t1)
    assert target.rdata == {container_ip(web1.name, net.name)}
    for missing in ("_9999._tcp.web", "_8080._udp.web", f"_9999._tcp.web.{net.name}"):
        assert ask_wire(pid, server, missing)[1].rcode() == dns.rcode.NXDOMAIN
    reply = ask_wire(pid, server, "_tcp.web", "A")[1]
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    asked = {q for q, _ in forwarded(lab.upstream_log)}
    assert not {q for q in asked if "_tcp.web" in q or "_udp.web" in q}, asked


def test_srv_big_answer_truncates_over_udp(servers: Lab) -> None:
    lab = servers
    net = lab.add_network("bignet")
    client = lab.run("bclient", [net])
    long = "x" * 40
    boxes = [lab.run(f"{long}{i}", [net], "--network-alias", "big", "--expose", "7000")
             for i in range(8)]
    server, pid = lab.server_for(client), container_pid(client.name)
    size, whole = until(lambda: ask_wire(pid, server, "_7000._tcp.big", tcp=True),
                        lambda r: len(records(r[1])) == len(boxes))
    assert len(records(whole)) == len(boxes) and not whole.flags & dns.flags.TC
    assert len(records(whole, "additional")) == len(boxes) and size > 512
    size, cut = ask_wire(pid, server, "_7000._tcp.big")
    assert cut.flags & dns.flags.TC and size <= 512
    assert 0 < len(records(cut)) < len(boxes)
