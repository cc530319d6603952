"""Docker's "work with network commands" guide, step by step, against scopedns and Docker.

Each step asserts the answer a client container gets from scopedns (via the sidecar's address
on the client's network) and, where Docker's embedded DNS agrees, that 127.0.0.11 gives the same
set. Where they differ by design (several holders of one alias: Docker answers all of them,
shuffled; scopedns answers the first registered one) both expectations are spelled out.
Names that are not local are forwarded: both servers reach only the fake upstreams, which answer
NXDOMAIN (and `A 192.0.2.53` for `.invalid` names).

The steps share two networks (module fixture `world`) but each creates its own containers.
They run twice (conftest.py, `LAB_WAYS`): asking scopedns at the sidecar's address (direct),
and under `serve --takeover`, where the client's own 127.0.0.11 is scopedns and Docker's answer
is asked at Docker's own port in the client's namespace.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.reversename
import pytest

from .conftest import DIRECT, ORACLE_ONLY, WAYS, Lab
from .harness import (
    DOCKER_DNS,
    NO_REPLY,
    Container,
    Network,
    container_ip,
    container_pid,
    dig,
    docker,
    free_subnet,
)

pytestmark = pytest.mark.docker
LAB_WAYS = WAYS


@dataclass(frozen=True)
class World:
    isolated: Network  # fixed --subnet; exists before scopedns starts (learnt by the first sync)
    second: Network  # created while scopedns runs (learnt from events)


@pytest.fixture(scope="module")
def world(lab: Lab) -> World:
    isolated = lab.add_network("isolated", subnet=free_subnet())
    lab.start_server()
    return World(isolated, lab.add_network("second"))


def ip(box: Container, net: Network | str) -> str:
    return container_ip(box.name, net if isinstance(net, str) else net.name)


def reverse(address: str) -> str:
    return dns.reversename.from_address(address).to_text()


def test_01_fixed_subnet_and_ip(steps: Lab, world: World) -> None:
    """`docker run --network isolated --ip <fixed>`: the name resolves to that address."""
    fixed = world.isolated.host(203)  # far above the dynamically allocated ones
    c3 = steps.run("container3", [world.isolated], "--ip", fixed)
    client = steps.run("client1", [world.isolated])
    steps.expect(client, c3.name, rdata=[fixed])
    steps.expect(client, c3.name.upper(), rdata=[fixed])  # matching ignores case
    steps.expect(client, f"{c3.name}.{world.isolated.name}", rdata=[fixed])
    steps.expect(client, f"nosuch-{steps.engine.run_id}.invalid", rdata=["192.0.2.53"])
    steps.verify()


def test_02_container_on_two_networks(steps: Lab, world: World) -> None:
    """A container on both networks sees names on both; `name.network` picks one network."""
    iso, second = world.isolated, world.second
    alpha = steps.run("alpha", [iso])
    beta = steps.run("beta", [second])
    both = steps.run("both", [iso, second])
    steps.expect(both, alpha.name, rdata=[ip(alpha, iso)])
    steps.expect(both, beta.name, rdata=[ip(beta, second)])
    steps.expect(both, f"{alpha.name}.{iso.name}", rdata=[ip(alpha, iso)])
    steps.expect(both, f"{beta.name}.{second.name}", rdata=[ip(beta, second)])
    steps.expect(both, f"{both.name}.{second.name}", rdata=[ip(both, second)])
    steps.expect(both, f"{alpha.name}.{second.name}", rcode="NXDOMAIN")  # alpha is not there
    steps.expect(alpha, beta.name, rcode="NXDOMAIN")  # alpha is on `isolated` only
    steps.expect(beta, both.name, rdata=[ip(both, second)])
    steps.verify()


def test_03_default_bridge_gets_no_local_names(steps: Lab, world: World) -> None:
    """A default-bridge-only container gets no names: they are forwarded (NXDOMAIN). Under
    takeover it is left alone (it has no 127.0.0.11 to take over)."""
    target = steps.run("target", [world.isolated])
    lonely = steps.run("lonely", ["bridge"])
    if steps.way == DIRECT:
        steps.expect(lonely, target.name, rcode="NXDOMAIN", oracle=False)
        steps.expect(lonely, f"fwd-{steps.engine.run_id}.invalid", rdata=["192.0.2.53"],
                     oracle=False)
        if not ORACLE_ONLY and not steps.forwarded(target.name):
            steps.mismatches.append(f"scopedns did not forward {target.name} for {lonely.name}")
    # Docker runs no embedded DNS for a container on the default bridge alone (nor does
    # scopedns take one over).
    assert dig(container_pid(lonely.name), DOCKER_DNS, target.name).rcode == NO_REPLY
    # Connected to `isolated` too, it sees that network, even asking via the default bridge.
    docker("network", "connect", world.isolated.name, lonely.name)
    address = ip(target, world.isolated)
    steps.expect(lonely, target.name, rdata=[address], via="bridge")
    steps.expect(lonely, target.name, rdata=[address], via=world.isolated.name)
    steps.verify()


def test_04_link_to_a_container_not_yet_created(steps: Lab, world: World) -> None:
    """`--link ghost:gg` before `ghost` exists; once it runs, `gg` resolves to it."""
    ghost_name = steps.engine.unique("ghost")
    decl = steps.run("decl", [world.isolated], "--link", f"{ghost_name}:gg")
    steps.expect(decl, "gg", rcode="NXDOMAIN")
    ghost = steps.run("ghost", [world.isolated])
    steps.expect(decl, "gg", rdata=[ip(ghost, world.isolated)])
    steps.expect(decl, f"gg.{world.isolated.name}", rdata=[ip(ghost, world.isolated)])
    steps.verify()


def test_05_link_alias_scope(steps: Lab, world: World) -> None:
    """Link aliases belong to the declaring container, and only on the declaring network."""
    iso, second = world.isolated, world.second
    target = steps.run("t5", [iso])
    decl = steps.run("decl5", [iso], "--link", f"{target.name}:lk5")
    other = steps.run("other5", [iso])
    steps.expect(decl, "lk5", rdata=[ip(target, iso)])
    steps.expect(other, "lk5", rcode="NXDOMAIN")  # not its link: forwarded
    steps.expect(other, target.name, rdata=[ip(target, iso)])
    far = steps.run("far5", [second])
    declfar = steps.run("declfar5", [iso, second], "--link", f"{far.name}:fl5")
    steps.expect(declfar, "fl5", rcode="NXDOMAIN")  # declared on `isolated`, far is not there
    steps.expect(declfar, far.name, rdata=[ip(far, second)])  # though far itself resolves
    steps.verify()


def connect_with_link(steps: Lab, world: World, tag: str) -> tuple[Container, Container]:
    """x on `second`; c on `isolated`, then `network connect --link x:y<tag> --alias z<tag>`."""
    x = steps.run(f"x{tag}", [world.second])
    c = steps.run(f"c{tag}", [world.isolated])
    docker("network", "connect", "--link", f"{x.name}:y{tag}", "--alias", f"z{tag}",
           world.second.name, c.name)
    return x, c


def test_06_connect_with_link_and_alias(steps: Lab, world: World) -> None:
    """`docker network connect --link x:y --alias z second c`."""
    second = world.second
    x, c = connect_with_link(steps, world, "6")
    peer = steps.run("peer6", [second])
    steps.expect(c, "y6", rdata=[ip(x, second)], via=second.name)
    steps.expect(c, "y6", rdata=[ip(x, second)])  # asked through `isolated`: same view
    steps.expect(c, "z6", rdata=[ip(c, second)])
    steps.expect(peer, "z6", rdata=[ip(c, second)])
    steps.expect(peer, c.name, rdata=[ip(c, second)])
    steps.expect(peer, "y6", rcode="NXDOMAIN")  # c's link, not peer's
    steps.verify()


def test_07_disconnect_removes_names(steps: Lab, world: World) -> None:
    """`docker network disconnect second c`: c's names, alias and link on `second` vanish."""
    iso, second = world.isolated, world.second
    x, c = connect_with_link(steps, world, "7")
    peer = steps.run("peer7", [second])
    neighbour = steps.run("neighbour7", [iso])
    steps.expect(peer, "z7", rdata=[ip(c, second)])  # before
    steps.expect(c, "y7", rdata=[ip(x, second)])
    docker("network", "disconnect", second.name, c.name)
    steps.expect(peer, "z7", rcode="NXDOMAIN")
    steps.expect(peer, c.name, rcode="NXDOMAIN")
    steps.expect(c, "y7", rcode="NXDOMAIN")
    steps.expect(c, x.name, rcode="NXDOMAIN")
    steps.expect(c, f"{c.name}.{second.name}", rcode="NXDOMAIN")
    steps.expect(neighbour, c.name, rdata=[ip(c, iso)])  # still on `isolated`
    steps.verify()


def test_08_shared_network_alias_first_registered(steps: Lab, world: World) -> None:
    """Two holders of `--network-alias app`: scopedns answers the first registered one."""
    iso = world.isolated
    alias = steps.engine.unique("app")
    app1 = steps.run("app1", [iso], "--network-alias", alias)
    app2 = steps.run("app2", [iso], "--network-alias", alias)
    client = steps.run("client8", [iso])
    ip1, ip2 = ip(app1, iso), ip(app2, iso)
    steps.expect(client, alias, rdata=[ip1], docker_rdata=[ip1, ip2])
    docker("stop", "-t", "0", app1.name)
    steps.expect(client, app1.name, rcode="NXDOMAIN")
    steps.expect(client, alias, rdata=[ip2])
    docker("start", app1.name)
    ip1 = ip(app1, iso)
    steps.expect(client, app1.name, rdata=[ip1])  # scopedns has seen the restart...
    steps.expect(client, alias, rdata=[ip2], docker_rdata=[ip1, ip2])  # ...and keeps app2
    steps.verify()


def test_09_ptr(steps: Lab, world: World) -> None:
    """PTR for a container address answers `<name>.<network>.`; others are forwarded."""
    iso, second = world.isolated, world.second
    fixed = iso.host(209)
    box = steps.run("ptr9", [iso], "--ip", fixed, "--network-alias", "notinptr9")
    client = steps.run("client9", [iso])
    elsewhere = steps.run("elsewhere9", [second])
    steps.expect(client, reverse(fixed), "PTR", rdata=[f"{box.name}.{iso.name}."])
    steps.expect(client, reverse(ip(client, iso)), "PTR", rdata=[f"{client.name}.{iso.name}."])
    steps.expect(client, reverse(ip(elsewhere, second)), "PTR", rcode="NXDOMAIN")
    steps.expect(client, reverse(iso.gateway), "PTR", rcode="NXDOMAIN")
    steps.verify()


def test_10_network_removed(steps: Lab, world: World) -> None:
    """A network created and then removed while scopedns runs: its names vanish."""
    iso = world.isolated
    third = steps.add_network("third")
    lone = steps.run("lone10", [third])
    dual = steps.run("dual10", [iso, third])
    client = steps.run("client10", [iso, third])
    steps.expect(client, lone.name, rdata=[ip(lone, third)])
    steps.expect(client, f"{dual.name}.{third.name}", rdata=[ip(dual, third)])
    steps.expect_host(lone.name, rdata=[ip(lone, third)])
    docker("rm", "-f", lone.name)
    for box in (dual, client, steps.sidecar):
        assert box is not None
        docker("network", "disconnect", third.name, box.name)
    docker("network", "rm", third.name)
    steps.expect(client, lone.name, rcode="NXDOMAIN")
    steps.expect(client, f"{dual.name}.{third.name}", rcode="NXDOMAIN")
    steps.expect(client, dual.name, rdata=[ip(dual, iso)])
    steps.expect_host(lone.name, rcode="NXDOMAIN")
    steps.expect_host(f"{dual.name}.{third.name}", rcode="NXDOMAIN")
    steps.verify()
