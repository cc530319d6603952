"""Every way in (docs/deployment.md), proven with clients that ask ONLY their own resolver:
busybox `nslookup NAME` and glibc `getent hosts NAME`, never `dig @scopedns`.

The sidecar is the scopedns image (`make image`) started on the default bridge with
`serve --attach labeled` and the engine socket: it joins the test networks labelled
`scopedns.attach=true` itself, at the address their `scopedns.address` label names (outside
their --ip-range, so no container takes it first). `labeled`, not `all`, because the engine is
shared: `all` would join other people's networks (the choice of networks is unit-tested in
tests/test_attach_policy.py). scopedns forwards to a fake upstream on the front network's
gateway port 5300; Docker's own fallback (--dns of clients that do not use scopedns) is another
fake on port 53 there, so nothing leaves the host.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from .conftest import unavailable
from .deploy_lab import (
    SCOPEDNS_IMAGE,
    ZONE,
    Clients,
    eventually,
    getent,
    gives,
    ip,
    not_found,
    nslookup,
)
from .harness import (
    DOCKER,
    LABEL,
    NO_REPLY,
    REPO_ROOT,
    Engine,
    Network,
    Processes,
    dig,
    docker,
    engine_problem,
    ensure_image,
    fake_upstream_argv,
    forwarded,
    free_subnet,
    poll,
    tail,
)

pytestmark = pytest.mark.docker
DOCKER_PREFIX = "dpl-"
FAKE = "192.0.2.53"  # the fake upstream's answer for *.invalid


@dataclass
class Deploy:
    engine: Engine
    procs: Processes
    logs: Path
    clients: Clients
    front: Network  # labelled: the sidecar joins it at `address`
    back: Network  # labelled: joined at an address the engine picks
    address: str  # the sidecar's address on front
    sidecar: str
    upstream_log: Path  # what scopedns forwarded (the fake on front's gateway:5300)

    def forwarded(self, name: str) -> bool:
        return any(qname == name.lower() + "." for qname, _ in forwarded(self.upstream_log))


def labelled(subnet: IPv4Network, address: str | None = None) -> list[str]:
    options = ["--ip-range", str(IPv4Network((subnet.network_address + 128, 25))),
               "--label", "scopedns.attach=true"]
    return options + (["--label", f"scopedns.address={address}"] if address else [])


def start_sidecar(engine: Engine, front: Network) -> str:
    name = engine.unique("sidecar")
    gid = str(os.stat("/var/run/docker.sock").st_gid)
    engine.containers.append(name)
    docker("run", "-d", "--name", name, "--label", f"{LABEL}={engine.run_id}",
           "--dns", front.gateway, "--group-add", gid,
           "-v", "/var/run/docker.sock:/var/run/docker.sock", SCOPEDNS_IMAGE,
           "serve", "--attach", "labeled", "--domain", ZONE,
           "--upstream", f"{front.gateway}:5300", "--log-level", "debug")
    return name


@pytest.fixture(scope="module")
def deploy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deploy]:
    problem = engine_problem()
    if problem is None and not docker("image", "ls", "-q", SCOPEDNS_IMAGE, check=False):
        problem = f"image {SCOPEDNS_IMAGE} missing: run `make image`"
    if problem is not None:
        unavailable(problem)
    ensure_image()
    run_id = secrets.token_hex(3)
    logs = tmp_path_factory.mktemp(f"deploy-{run_id}")
    engine, procs = Engine(run_id, DOCKER_PREFIX), Processes(logs)
    try:
        subnet = free_subnet()
        address = str(subnet.network_address + 53)
        front = engine.network("front", subnet, labelled(subnet, address))
        back_subnet = free_subnet()
        back = engine.network("back", back_subnet, labelled(back_subnet))
        upstream_log = logs / "upstream-queries.jsonl"
        procs.start("upstream", fake_upstream_argv(upstream_log, f"{front.gateway}:5300"))
        procs.start("docker-fallback", fake_upstream_argv(logs / "fallback.jsonl",
                                                          f"{front.gateway}:53"))
        sidecar = start_sidecar(engine, front)
        ready = poll(lambda: dig(None, address, "ready-probe.invalid"),
                     lambda a: a.rcode == "NOERROR", timeout=60)
        assert ready.rcode == "NOERROR", subprocess.run(
            [DOCKER, "logs", sidecar], capture_output=True, text=True, check=False).stderr
        yield Deploy(engine, procs, logs, Clients(engine, logs, front.gateway), front, back,
                     address, sidecar, upstream_log)
    finally:
        procs.stop()
        errors = engine.cleanup()
        if errors:
            print(f"deploy cleanup problems: {errors}")


def sidecar_log(deploy: Deploy) -> str:
    """The sidecar's log (it logs to stderr)."""
    proc = subprocess.run([DOCKER, "logs", deploy.sidecar], capture_output=True, text=True,
                          timeout=30, check=False)
    return proc.stdout + proc.stderr


def logged(deploy: Deploy, text: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while text not in sidecar_log(deploy):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


# --- the sidecar attaches itself -------------------------------------------------------------


def test_sidecar_joins_labelled_networks_at_their_address_and_later_ones(deploy: Deploy) -> None:
    assert logged(deploy, f"joined network {deploy.front.name} at {deploy.address}")
    assert logged(deploy, f"joined network {deploy.back.name} at ")
    later_subnet = free_subnet()
    later = deploy.engine.network("later", later_subnet, labelled(later_subnet))
    plain = deploy.engine.network("plain")  # not labelled: never joined
    assert logged(deploy, f"joined network {later.name} at {later_subnet.network_address + 128}")
    joined = docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", deploy.sidecar)
    assert later.name in joined and plain.name not in joined
    assert "bridge" in joined  # where it was started; never joined by --attach otherwise


def test_a_taken_label_address_is_one_log_line_not_a_crash(deploy: Deploy) -> None:
    """The label names the network's gateway address, which the engine holds: "Address already
    in use". One error line names the network and the address; the sidecar keeps serving."""
    subnet = free_subnet()
    gateway = str(subnet.network_address + 1)
    taken = deploy.engine.network("taken", subnet, labelled(subnet, gateway))
    assert logged(deploy, f"cannot join network {taken.name} at {gateway}")
    lines = [line for line in sidecar_log(deploy).splitlines() if taken.name in line]
    assert len(lines) == 1 and "already in use" in lines[0], lines
    assert docker("inspect", "-f", "{{.State.Running}}", deploy.sidecar) == "true"
    assert dig(None, deploy.address, "still-there.invalid").rcode == "NOERROR"


# --- forwarded zone: clients keep 127.0.0.11, started with --dns <scopedns> ------------------


def check_forwarded_zone(deploy: Deploy, tag: str, dns: str, net: Network, other: Network
                         ) -> None:
    """Clients on `net` (and one on `other` too) started with --dns `dns`: Docker answers plain
    names itself and forwards the rest, from the client's own address, to scopedns."""
    def run(base: str, *args: str, **kwargs: Any) -> str:
        return deploy.clients.start(f"{tag}-{base}", *args, **kwargs)

    first = run("first", net.name, "--network-alias", "app")
    second = run("second", net.name, "--network-alias", "app")
    elsewhere = run("elsewhere", other.name)
    client = run("client", net.name, dns=dns)
    linker = run("linker", net.name, "--link", f"{first}:lnk", dns=dns)
    both = run("both", net.name, dns=dns, also=[other.name])
    zone = f".{ZONE}"
    first_ip, second_ip = ip(first, net.name), ip(second, net.name)
    # the zone name gets the first-registered holder only, from scopedns
    got = eventually(lambda: nslookup(client, "app" + zone), gives([first_ip]))
    assert got.addresses == {first_ip}, got.text
    # the plain name is Docker's own answer: every holder (scopedns would give one)
    got = eventually(lambda: nslookup(client, "app"), gives([first_ip, second_ip]))
    assert got.addresses == {first_ip, second_ip}, got.text
    # the client's view: a name on a network it is not on does not resolve in the zone...
    got = eventually(lambda: nslookup(client, elsewhere + zone), not_found, timeout=3)
    assert not got.found, got.text
    # ...but does for a client on that network too
    got = eventually(lambda: nslookup(both, elsewhere + zone), gives([ip(elsewhere, other.name)]))
    assert got.addresses == {ip(elsewhere, other.name)}, got.text
    # a link alias resolves for the container that declared it, and for no one else
    got = eventually(lambda: nslookup(linker, "lnk" + zone), gives([first_ip]))
    assert got.addresses == {first_ip}, got.text
    assert not nslookup(client, "lnk" + zone).found
    # name.network.zone
    got = eventually(lambda: nslookup(client, f"{first}.{net.name}{zone}"), gives([first_ip]))
    assert got.addresses == {first_ip}, got.text
    # a miss goes Docker -> scopedns -> the (fake) upstream
    miss = f"nosuch-{deploy.engine.run_id}-{net.name}.invalid"
    assert nslookup(client, miss).addresses == {FAKE}
    assert deploy.forwarded(miss)
    # first-registered failover: `first` stops, `second` answers at once
    docker("stop", "-t", "0", first)
    got = eventually(lambda: nslookup(client, "app" + zone), gives([second_ip]))
    assert got.addresses == {second_ip}, got.text


def test_forwarded_zone_through_the_sidecar(deploy: Deploy) -> None:
    check_forwarded_zone(deploy, "sc", deploy.address, deploy.front, deploy.back)


def test_forwarded_zone_through_a_host_process_on_a_gateway(deploy: Deploy) -> None:
    """scopedns on the host, listening on one bridge's gateway address; clients on ANOTHER
    network use it as --dns (the host owns every gateway address, so it is reachable from
    every network), and the link-alias and view checks prove the source address it sees is the
    container's own, not a gateway's (which would be the network view, without links)."""
    served, other = deploy.engine.network("hostnet"), deploy.engine.network("hostnet2")
    argv = [sys.executable, "-m", "resolver", "serve", "--listen", f"{served.gateway}:53",
            "--docker", "unix:///var/run/docker.sock", "--domain", ZONE,
            "--upstream", f"{deploy.front.gateway}:5300", "--log-level", "debug"]
    deploy.procs.start("host-scopedns", argv, timeout=30, ready=lambda: dig(
        None, served.gateway, "ready-probe.invalid").rcode not in ("SERVFAIL", NO_REPLY))
    try:
        local = deploy.clients.start("local", served.name, dns=served.gateway)
        local_ip = ip(local, served.name)
        got = eventually(lambda: nslookup(local, f"{local}.{ZONE}"), gives([local_ip]))
        assert got.addresses == {local_ip}, got.text
        check_forwarded_zone(deploy, "hp", served.gateway, other, served)
    finally:
        deploy.procs.stop("host-scopedns")


# --- direct: the container's /etc/resolv.conf points at scopedns ----------------------------


def test_direct_every_rule_through_the_containers_own_resolver(deploy: Deploy) -> None:
    """Clients whose /etc/resolv.conf (printed by `scopedns resolv-conf`, bind-mounted) names
    the sidecar. How the stub resolvers differ, and what each check relies on:
    - busybox nslookup asks A then AAAA and prints both; it tries the search list FIRST,
      whatever ndots says (`svc` with `search dpl.test` becomes `svc.dpl.test`);
    - glibc `getent hosts` asks AAAA first and falls back to A: scopedns answers NODATA for
      AAAA of an IPv4-only name, so nothing is forwarded; with ndots:0 (Docker's, and
      resolv-conf's default) a name is asked as it is before any search suffix;
    - dig (not used as proof here) asks exactly one name and type, no search list unless
      +search, no AAAA fallback."""
    run, net = deploy.clients.start, deploy.front.name
    plain = deploy.clients.resolv_conf("direct", deploy.address)
    search = deploy.clients.resolv_conf("search", deploy.address, "--search", ZONE)
    first = run("d-first", net, "--network-alias", "svc")
    second = run("d-second", net, "--network-alias", "svc")
    away = run("d-away", deploy.back.name)
    busybox = run("d-busybox", net, resolv_conf=plain)
    glibc = run("d-glibc", net, resolv_conf=plain, glibc=True)
    linker = run("d-linker", net, "--link", f"{second}:dlnk", resolv_conf=plain)
    first_ip, second_ip = ip(first, net), ip(second, net)
    # first-registered holder only, from both resolvers
    for ask in (lambda: nslookup(busybox, "svc"), lambda: getent(glibc, "svc")):
        got = eventually(ask, gives([first_ip]))
        assert got.addresses == {first_ip}, got.text
    # link aliases only for the container that declared the link; views
    got = eventually(lambda: nslookup(linker, "dlnk"), gives([second_ip]))
    assert got.addresses == {second_ip}, got.text
    assert not nslookup(busybox, "dlnk").found
    assert not nslookup(busybox, away).found  # on a network the client is not on
    # name.network, and PTR giving name.network
    assert eventually(lambda: getent(glibc, f"{second}.{net}"), gives([second_ip])).found
    assert nslookup(busybox, f"{second}.{net}").addresses == {second_ip}
    assert nslookup(busybox, second_ip).names == {f"{second}.{net}"}
    assert getent(glibc, second_ip).names == {f"{second}.{net}"}
    # NODATA for a type a local name does not have, never forwarded; AAAA-first getent
    txt = nslookup(busybox, second, "txt")
    assert not txt.found and "can't find" not in txt.text, txt.text
    assert getent(glibc, second).addresses == {second_ip}
    assert not deploy.forwarded(second)
    # misses are forwarded upstream
    for box, ask_miss in ((busybox, nslookup), (glibc, getent)):
        miss = f"direct-miss-{box}.invalid"
        assert ask_miss(box, miss).addresses == {FAKE}
        assert deploy.forwarded(miss)
    # the search list: busybox tries it first, glibc (ndots:0) asks the name as it is first
    searching = run("d-search", net, resolv_conf=search)
    searching_glibc = run("d-search-glibc", net, resolv_conf=search, glibc=True)
    got = nslookup(searching, "svc")
    assert got.asked_as == f"svc.{ZONE}" and got.addresses == {first_ip}, got.text
    got = getent(searching_glibc, "svc")
    assert got.asked_as == "svc" and got.addresses == {first_ip}, got.text
    # failover: the first holder stops, the next answers at once (TTL 0)
    docker("stop", "-t", "0", first)
    for ask in (lambda: nslookup(busybox, "svc"), lambda: getent(glibc, "svc")):
        got = eventually(ask, gives([second_ip]))
        assert got.addresses == {second_ip}, got.text


# --- host: the host's own resolver ------------------------------------------------------------

HOST_SCRIPT = """
set -u
ip link set lo up
mount --bind "$RESOLV" /etc/resolv.conf
timeout 100 "$PY" -m tests.integration.fake_upstream --log "$LOG" --listen 127.0.0.1:5300 \
    >/dev/null 2>&1 &
upstream=$!
timeout 100 "$PY" -m resolver serve --listen 127.0.0.1:53 --upstream 127.0.0.1:5300 \
    --domain "$ZONE" >"$SERVER_LOG" 2>&1 &
server=$!
trap 'kill $upstream $server 2>/dev/null; wait' EXIT
for _ in $(seq 100); do
  getent hosts "ready-probe.invalid" >/dev/null && break
  sleep 0.3
done
for name in $NAMES; do echo "== $name"; getent hosts "$name"; done
"""


def test_host_view_from_the_hosts_own_resolver(deploy: Deploy) -> None:
    """The host's processes resolve through glibc and /etc/resolv.conf. Changing the real
    host's file is not safe on a shared machine, so the test runs in a private mount and
    network namespace (`unshare --mount --net`): there /etc/resolv.conf is bind-mounted to
    `nameserver 127.0.0.1` and scopedns listens on 127.0.0.1:53 (loopback: the host view, every
    user-defined network), with the engine reached through its socket file."""
    holder = deploy.clients.start("h-holder", deploy.front.name, "--network-alias", "hsvc")
    holder_ip = ip(holder, deploy.front.name)
    resolv = deploy.logs / "host-resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions ndots:0\n")
    names = {holder: {holder_ip}, f"{holder}.{deploy.front.name}": {holder_ip},
             "hsvc": {holder_ip}, f"{holder}.{ZONE}": {holder_ip},
             f"host-miss-{deploy.engine.run_id}.invalid": {FAKE}}
    env = {**os.environ, "RESOLV": str(resolv), "PY": sys.executable, "ZONE": ZONE,
           "LOG": str(deploy.logs / "host-upstream.jsonl"),
           "SERVER_LOG": str(deploy.logs / "host-scopedns.log"), "NAMES": " ".join(names)}
    proc = subprocess.run(["unshare", "--mount", "--net", "--propagation", "private",
                           "sh", "-c", HOST_SCRIPT], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    answers: dict[str, set[str]] = {}
    for block in proc.stdout.split("== ")[1:]:
        name, _, rest = block.partition("\n")
        answers[name] = {line.split()[0] for line in rest.splitlines() if line.split()}
    assert answers == names, (proc.stdout, proc.stderr,
                              tail(deploy.logs / "host-scopedns.log"))

