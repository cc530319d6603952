"""Differential checks: scopedns against Docker's embedded DNS on the finer points.

Docker's 127.0.0.11 and scopedns get the same query from the same client; docs/ says what both
do. Where docs/ says "as Docker", the answers must be equal; where docs/differences.md
lists a deliberate difference (case-insensitive link aliases and network suffixes, NODATA for
other types of local names, SERVFAIL for internal-only clients, views by source address), the
two expectations are spelled out.

Networks: `dnsa`, `dnsb` (IPv4), `dns6` (dual-stack), `aint` (internal; sorts first by name but
Docker puts internal networks last). They exist before scopedns starts; every container is
started after, so it is learnt from events.

Every check runs twice (conftest.py, `LAB_WAYS`): asking scopedns at the sidecar's address
(direct), and under `serve --takeover`, the client asking its own 127.0.0.11 and Docker's answer
taken at Docker's own port in the client's namespace.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.reversename
import pytest

from .conftest import DIRECT, ORACLE_ONLY, WAYS, Lab
from .harness import Container, Network, container_ip, docker, ula_subnet

pytestmark = pytest.mark.docker
LAB_WAYS = WAYS


@dataclass(frozen=True)
class Topo:
    a: Network
    b: Network
    v6: Network
    internal: Network
    svc: dict[str, Container]  # holders of alias `svc`, one per network, by network key
    idbox: Container  # on a, with --hostname
    cab: Container  # client on a + b, declares --link idbox:lnk on a
    cbi: Container  # client on b + internal
    c6: Container  # client on a + dns6


@pytest.fixture(scope="module")
def topo(lab: Lab) -> Topo:
    a = lab.add_network("dnsa")
    b = lab.add_network("dnsb")
    v6 = lab.add_network("dns6", options=["--ipv6", "--subnet", ula_subnet()])
    internal = lab.add_network("aint", options=["--internal"])
    lab.start_server()
    nets = {"a": a, "b": b, "v6": v6, "internal": internal}
    svc = {key: lab.run(f"svc{key}", [net], "--network-alias", "svc") for key, net in nets.items()}
    idbox = lab.run("idbox", [a], "--hostname", lab.engine.unique("hn"))
    return Topo(a, b, v6, internal, svc, idbox,
                cab=lab.run("cab", [a, b], "--link", f"{idbox.name}:lnk"),
                cbi=lab.run("cbi", [b, internal]),
                c6=lab.run("c6", [a, v6]))


def ip(box: Container, net: Network, key: str = "IPAddress") -> str:
    if key == "IPAddress":
        return container_ip(box.name, net.name)
    return docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{net.name}").{key}}}}}',
                  box.name)


def reverse(address: str) -> str:
    return dns.reversename.from_address(address).to_text()


def test_endpoint_order(steps: Lab, topo: Topo) -> None:
    """First network in Docker's order wins: dual-stack, then by name; internal last."""
    svc = topo.svc
    steps.expect(topo.cab, "svc", rdata=[ip(svc["a"], topo.a)])  # dnsa < dnsb
    steps.expect(topo.cbi, "svc", rdata=[ip(svc["b"], topo.b)])  # aint is internal: last
    steps.expect(topo.c6, "svc", rdata=[ip(svc["v6"], topo.v6)])  # dual-stack first
    v6_address = ip(svc["v6"], topo.v6, "GlobalIPv6Address")
    steps.expect(topo.c6, "svc", "AAAA", rdata=[v6_address])
    steps.expect(topo.c6, topo.c6.name, rdata=[ip(topo.c6, topo.v6)])
    steps.expect(topo.c6, reverse(v6_address), "PTR",
                 rdata=[f"{svc['v6'].name}.{topo.v6.name}."])
    steps.verify()


def test_identity_names(steps: Lab, topo: Topo) -> None:
    """Short ID (exactly 12 characters) and --hostname are names; other ID forms are not."""
    box, address = topo.idbox, ip(topo.idbox, topo.a)
    full_id = docker("inspect", "-f", "{{.Id}}", box.name)
    steps.expect(topo.cab, full_id[:12], rdata=[address])
    steps.expect(topo.cab, full_id[:11], rcode="NXDOMAIN")
    steps.expect(topo.cab, full_id[:13], rcode="NXDOMAIN")
    steps.expect(topo.cab, steps.engine.unique("hn"), rdata=[address])
    steps.expect(topo.cab, box.name.upper(), rdata=[address])
    dotted = steps.run("my.dotted", [topo.a])
    steps.expect(topo.cab, dotted.name, rdata=[ip(dotted, topo.a)])
    steps.expect(topo.cab, f"{dotted.name}.{topo.a.name}", rdata=[ip(dotted, topo.a)])
    steps.verify()


def test_record_types(steps: Lab, topo: Topo) -> None:
    """AAAA and MX of a local IPv4-only name: NODATA. TXT: Docker forwards, scopedns NODATA."""
    name = topo.idbox.name
    steps.expect(topo.cab, name, "AAAA")
    steps.expect(topo.cab, name, "MX")
    steps.expect(topo.cab, name, "TXT", docker_rcode="NXDOMAIN")  # docs/answers.md: never forwarded
    steps.same_as_docker(topo.cab, reverse(ip(topo.cab, topo.b)), "PTR")
    steps.verify()


def test_case_of_link_aliases_and_suffixes(steps: Lab, topo: Topo) -> None:
    """Docker matches link aliases and network suffixes by exact case; scopedns ignores case."""
    address = ip(topo.idbox, topo.a)
    steps.expect(topo.cab, "lnk", rdata=[address])
    steps.expect(topo.cab, "LNK", rdata=[address], docker_rcode="NXDOMAIN", docker_rdata=())
    steps.expect(topo.cab, f"{topo.idbox.name}.{topo.a.name.upper()}", rdata=[address],
                 docker_rcode="NXDOMAIN", docker_rdata=())
    steps.verify()


def test_name_shared_by_container_and_alias(steps: Lab, topo: Topo) -> None:
    """A container name equal to another's alias: two holders; PTR never shows aliases."""
    first = steps.run("svc2", [topo.a])
    second = steps.run("holder2", [topo.a], "--network-alias", first.name)
    ips = [ip(first, topo.a), ip(second, topo.a)]
    steps.expect(topo.cab, first.name, rdata=ips[:1], docker_rdata=ips)
    steps.expect(topo.cab, reverse(ips[1]), "PTR", rdata=[f"{second.name}.{topo.a.name}."])
    steps.verify()


def test_lifecycle(steps: Lab, topo: Topo) -> None:
    """Created-only: no name. Rename: new name and PTR. Paused: kept. Restart: back."""
    a, cab = topo.a, topo.cab
    created = steps.engine.run("created", a.name, start=False)
    steps.expect(cab, created.name, rcode="NXDOMAIN")
    old = steps.run("ren", [a])
    steps.expect(cab, old.name, rdata=[ip(old, a)])
    new = steps.engine.unique("renamed")
    steps.engine.containers.append(new)
    docker("rename", old.name, new)
    renamed = Container(new, a.name)
    steps.expect(cab, new, rdata=[ip(renamed, a)])
    steps.expect(cab, old.name, rcode="NXDOMAIN")
    steps.expect(cab, reverse(ip(renamed, a)), "PTR", rdata=[f"{new}.{a.name}."])
    paused = steps.run("paused", [a])
    docker("pause", paused.name)
    steps.expect(cab, paused.name, rdata=[ip(paused, a)])
    docker("unpause", paused.name)
    docker("restart", "-t", "0", paused.name)
    steps.expect(cab, paused.name, rdata=[ip(paused, a)])
    brief = steps.engine.run("brief", a.name, command=("sleep", "3"))  # exits by itself
    steps.expect(cab, brief.name, rdata=[ip(brief, a)])
    steps.expect(cab, brief.name, rcode="NXDOMAIN")  # polled: after `die`
    steps.verify()


def test_connect_while_stopped(steps: Lab, topo: Topo) -> None:
    """`network connect --alias` on a created container: its names appear when it starts."""
    box = steps.engine.run("later", topo.a.name, start=False)
    docker("network", "connect", "--alias", "laterb", topo.b.name, box.name)
    client = steps.run("cb", [topo.b])
    steps.expect(client, "laterb", rcode="NXDOMAIN")
    docker("start", box.name)
    steps.expect(client, "laterb", rdata=[ip(box, topo.b)])
    steps.expect(topo.cab, box.name, rdata=[ip(box, topo.a)])
    steps.verify()


def test_views_by_source(steps: Lab, topo: Topo) -> None:
    """Host view (loopback), network view (a gateway address), REFUSED for strangers. Under
    takeover a container always asks as itself: only the host view applies."""
    assert steps.sidecar is not None
    sidecar = steps.sidecar.name
    a_address, b_address = ip(topo.svc["a"], topo.a), ip(topo.svc["b"], topo.b)
    steps.expect_host(topo.svc["a"].name, rdata=[a_address])
    steps.expect_host(topo.svc["b"].name, rdata=[b_address])
    steps.expect_host(f"{topo.svc['b'].name}.{topo.b.name}", rdata=[b_address])
    if steps.way != DIRECT:
        steps.verify()
        return
    # From the host, the source is dnsa's gateway: in dnsa's subnet, not an endpoint.
    via_a = container_ip(sidecar, topo.a.name)
    steps.expect_host(topo.svc["a"].name, rdata=[a_address], server=via_a, netns=False)
    steps.expect_host("svc", rdata=[a_address], server=via_a, netns=False)
    steps.expect_host(topo.svc["b"].name, rcode="NXDOMAIN", server=via_a, netns=False)
    steps.expect_host("lnk", rcode="NXDOMAIN", server=via_a, netns=False)
    # The default bridge's gateway is no container and no user-defined network: REFUSED.
    via_bridge = container_ip(sidecar, "bridge")
    steps.expect_host(topo.svc["a"].name, rcode="REFUSED", server=via_bridge, netns=False)
    steps.verify()


def test_internal_only_client(steps: Lab, topo: Topo) -> None:
    """Local names resolve on an internal network; nothing is forwarded (SERVFAIL)."""
    lonely = steps.run("ionly", [topo.internal])
    steps.expect(lonely, "svc", rdata=[ip(topo.svc["internal"], topo.internal)])
    steps.expect(lonely, f"leak-{steps.engine.run_id}.invalid", rcode="SERVFAIL", oracle=False)
    steps.verify()


def test_tcp(steps: Lab, topo: Topo) -> None:
    """Over TCP: local names as over UDP; forwards go upstream over TCP (docs/forwarding.md)."""
    address = ip(topo.idbox, topo.a)
    steps.expect(topo.cab, topo.idbox.name, rdata=[address], tcp=True)
    steps.expect(topo.cab, "lnk", rdata=[address], tcp=True)
    forwarded = f"tcp-{steps.engine.run_id}.invalid"
    steps.expect(topo.cab, forwarded, rdata=["192.0.2.53"], tcp=True)
    if not ORACLE_ONLY and not steps.forwarded(forwarded, "tcp"):
        steps.mismatches.append(f"scopedns did not forward {forwarded} over TCP")
    steps.verify()


def test_ndots_option(steps: Lab, topo: Topo) -> None:
    """`--dns-opt ndots:2`: Docker answers a single-label miss NOERROR/empty, unforwarded
    (docs/answers.md, "NODATA"), so that the stub resolver walks its search list."""
    client = steps.run("ndots", [topo.a], "--dns-opt", "ndots:2")
    steps.expect(client, topo.idbox.name, rdata=[ip(topo.idbox, topo.a)])
    for qtype in ("A", "AAAA"):
        steps.same_as_docker(client, f"nosuch-{steps.engine.run_id}", qtype)
    steps.same_as_docker(client, f"nosuch-{steps.engine.run_id}.invalid")
    steps.verify()


def test_first_registered_order_survives_restart(steps: Lab, topo: Topo) -> None:
    """After a restart scopedns rebuilds the order from start times (docs/order.md)."""
    alias = steps.engine.unique("ordered")
    one = steps.run("one", [topo.a], "--network-alias", alias)
    two = steps.run("two", [topo.a], "--network-alias", alias)
    docker("restart", "-t", "0", one.name)  # `one` now joined last
    ips = [ip(one, topo.a), ip(two, topo.a)]
    steps.expect(topo.cab, one.name, rdata=ips[:1])
    steps.expect(topo.cab, alias, rdata=ips[1:], docker_rdata=ips)
    steps.restart_server()
    steps.expect(topo.cab, alias, rdata=ips[1:], docker_rdata=ips)
    steps.verify()
