"""`serve --takeover` on the real engine (docs/takeover.md): containers' own 127.0.0.11 answers
with scopedns's rules, with no change to any container, and is handed back to Docker when
scopedns stops, is killed, or `scopedns release` runs. Clients ask only their own resolver:
busybox `nslookup NAME` with no server, or dig at 127.0.0.11 inside their namespace (the
address their resolv.conf names). TTL tells who answered: scopedns 0, Docker 600.

scopedns is limited to this run's containers (`--takeover-only`), so other users of the engine
are never touched. The tests that stop or kill scopedns come last, in file order.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from .conftest import unavailable
from .harness import (
    Container,
    Engine,
    Processes,
    container_ip,
    container_pid,
    dig,
    docker,
    ensure_image,
    fake_upstream_argv,
    forwarded,
    run,
)
from .takeover_lab import (
    DOCKER_TTL,
    LATENCY,
    SCOPEDNS_TTL,
    TABLE,
    TakeoverLab,
    jsonl,
    latency_summary,
    nslookup_addresses,
    ptr_names,
    scrape,
    takeover_problem,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def tk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TakeoverLab]:
    problem = takeover_problem()
    if problem:
        unavailable(problem)  # a skip, or a failure when CI=true
    ensure_image()
    run_id = secrets.token_hex(3)
    logs = tmp_path_factory.mktemp("takeover")
    lab = TakeoverLab(Engine(run_id, "tko-"), Processes(logs), logs)
    try:
        lab.setup()
        # Started before scopedns: app1 then app2 share the alias `app` (app1 registered first).
        for base, options in (("app1", ("--network-alias", "app")),
                              ("app2", ("--network-alias", "app")), ("cli", ())):
            lab.boxes[base] = lab.box(base, *options)
        lab.start_server()
        yield lab
    finally:
        lab.procs.stop()
        lab.engine.cleanup()


def ip(box: Container, tk: TakeoverLab) -> str:
    assert tk.net is not None
    return container_ip(box.name, tk.net.name)


def holders(tk: TakeoverLab) -> tuple[Container, Container, Container]:
    return tk.boxes["app1"], tk.boxes["app2"], tk.boxes["cli"]


def test_plain_nslookup_gets_the_first_holder_with_ttl_0_and_fails_over(tk: TakeoverLab) -> None:
    app1, app2, cli = holders(tk)
    code, out = tk.nslookup(cli, "app")
    assert code == 0 and nslookup_addresses(out) == [ip(app1, tk)], out + tk.tail()
    assert tk.dig(cli, "app").records == ((SCOPEDNS_TTL, ip(app1, tk)),)
    assert tk.dig(cli, "app", tcp=True).records == ((SCOPEDNS_TTL, ip(app1, tk)),)
    second = ip(app2, tk)
    docker("stop", "-t", "0", app1.name)
    try:
        deadline = time.monotonic() + 5
        while nslookup_addresses(tk.nslookup(cli, "app")[1]) != [second]:
            assert time.monotonic() < deadline, tk.nslookup(cli, "app")[1] + tk.tail()
            time.sleep(0.1)
    finally:
        docker("start", app1.name)
    tk.wait_answerer(app1, app1.name, "scopedns")  # restarted: taken over again
    # app1 rejoined at the end: app2 is now the first holder.
    assert nslookup_addresses(tk.nslookup(cli, "app")[1]) == [second]


def test_metrics_count_the_containers_taken_over(tk: TakeoverLab) -> None:
    """/metrics (docs/operations.md) says how many containers scopedns answers for now."""
    holders(tk)
    deadline = time.monotonic() + 10
    while True:  # a takeover may still be finishing (another test restarted a holder)
        samples = scrape(tk.http_port)
        taken_now = samples.get(("scopedns_takeover_containers", ()), 0)
        if taken_now >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert taken_now >= 3, (samples, tk.tail())  # app1, app2 and cli, at least
    assert samples[("scopedns_takeover_total", (("outcome", "taken"),))] >= taken_now
    # Takeover latency: a container started now is taken over from its engine event, and
    # timed once (those found by the start-up listing have no event to time from).
    timed, taken = counts(samples)
    late = tk.box("timed")
    tk.wait_answerer(late, late.name, "scopedns")
    deadline = time.monotonic() + 10
    while True:  # answered as soon as its listeners are up; counted as take() returns
        after = scrape(tk.http_port)
        timed_after, taken_after = counts(after)
        if taken_after > taken or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert timed_after - timed == 1 and taken_after - taken == 1, (latency_summary(after),
                                                                   tk.tail())
    assert after[(LATENCY + "_sum", ())] > 0
    print(f"\ntakeover latency: {latency_summary(after)}")


def counts(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> tuple[float, float]:
    """(takeovers timed, takeovers done) in a scrape."""
    return (samples.get((LATENCY + "_count", ()), 0),
            samples.get(("scopedns_takeover_total", (("outcome", "taken"),)), 0))


def test_link_alias_name_network_ptr_nodata_and_forwarding(tk: TakeoverLab) -> None:
    app1, app2, _ = holders(tk)
    assert tk.net is not None
    linker = tk.box("linker", "--link", f"{app2.name}:lnk")  # started after scopedns
    tk.wait_answerer(linker, linker.name, "scopedns")
    assert nslookup_addresses(tk.nslookup(linker, "lnk")[1]) == [ip(app2, tk)]
    dotted = f"{app1.name}.{tk.net.name}"
    assert nslookup_addresses(tk.nslookup(linker, dotted)[1]) == [ip(app1, tk)]
    code, out = tk.nslookup(linker, ip(app2, tk))
    assert code == 0 and ptr_names(out) == [f"{app2.name}.{tk.net.name}"], out
    nodata = tk.dig(linker, "app", "MX")
    assert nodata.rcode == "NOERROR" and not nodata.records
    miss = f"miss-{tk.engine.run_id}.invalid"
    code, out = tk.nslookup(linker, miss)
    # Forwarded through Docker's resolver in the container's namespace to its --dns (the
    # gateway's fake upstream answers .invalid names with 192.0.2.53).
    assert code == 0 and "192.0.2.53" in nslookup_addresses(out), out + tk.tail()
    assert tk.forwarded(miss)
    assert not tk.forwarded("app") and not tk.forwarded("app.")  # local names never leave


def test_restart_gets_a_new_namespace_taken_over_once(tk: TakeoverLab) -> None:
    _, _, cli = holders(tk)
    tk.wait_answerer(cli, cli.name, "scopedns")  # a take after a restart may still retry
    docker("restart", "-t", "0", cli.name)
    tk.wait_answerer(cli, cli.name, "scopedns")
    assert tk.our_tables(cli).count(f"table ip {TABLE}") == 1


def test_network_connect_and_disconnect(tk: TakeoverLab) -> None:
    assert tk.net is not None and tk.other is not None
    loner = tk.engine.run("loner", "bridge", dns=tk.net.gateway)
    time.sleep(1)
    assert tk.our_tables(loner) == ""  # default bridge only: no 127.0.0.11 to take over
    docker("network", "connect", tk.other.name, loner.name)
    tk.wait_answerer(loner, loner.name, "scopedns")
    # Forwarding follows Docker's resolver in that namespace (its ports read after the join).
    miss = f"connected-{tk.engine.run_id}.invalid"
    code, out = tk.nslookup(loner, miss)
    assert code == 0 and "192.0.2.53" in nslookup_addresses(out), out + tk.tail()
    docker("network", "disconnect", tk.other.name, loner.name)
    deadline = time.monotonic() + 5
    while tk.our_tables(loner):
        assert time.monotonic() < deadline, tk.tail()
        time.sleep(0.1)


def test_container_network_pair_is_answered_as_the_owner(tk: TakeoverLab) -> None:
    app1, _, _ = holders(tk)
    linked = tk.box("owner", "--link", f"{app1.name}:mine")
    joiner = tk.engine.run("joiner", f"container:{linked.name}")
    tk.wait_answerer(linked, linked.name, "scopedns")
    # One namespace, the owner's view: the owner's link alias resolves for the joiner too.
    code, out = tk.nslookup(joiner, "mine")
    assert code == 0 and nslookup_addresses(out) == [ip(app1, tk)], out + tk.tail()
    assert tk.dig(joiner, "app").ttls == {SCOPEDNS_TTL}


def test_host_network_and_a_containers_own_dns_server_are_untouched(tk: TakeoverLab) -> None:
    _, app2, cli = holders(tk)
    tk.engine.run("hostnet", "host")
    time.sleep(1)
    assert TABLE not in run(["nft", "list", "tables"])  # never in the host's namespace
    assert tk.server_log is not None
    assert "host network: the host's own resolver" in tk.server_log.read_text()
    own = tk.box("owndns")
    log = tk.logs / "owndns-queries.jsonl"
    tk.procs.start("owndns", fake_upstream_argv(log, "0.0.0.0:53"),
                   netns_pid=container_pid(own.name))
    tk.wait_answerer(own, own.name, "scopedns")
    # Its own server on 0.0.0.0:53 still answers others...
    name = f"own-{tk.engine.run_id}.invalid"
    assert dig(container_pid(cli.name), ip(own, tk), name).rdata == {"192.0.2.53"}
    assert (name + ".", "udp") in forwarded(log)
    # ...and its own 127.0.0.11 is scopedns, not its server.
    assert nslookup_addresses(tk.nslookup(own, "app")[1]) == [ip(app2, tk)]
    assert not any(q.startswith("app.") for q, _ in forwarded(log))


# ----- scopedns stops, is killed, restarts (these change the server: keep them last) -----


def test_one_udp_socket_client_is_taken_over_and_handed_back(tk: TakeoverLab) -> None:
    _, _, cli = holders(tk)
    tk.stop_server()
    out = tk.logs / "one-socket.log"
    tk.procs.start("one-socket", [sys.executable, "-m", "tests.integration.one_socket_client",
                                  "--name", cli.name, "--count", "400", "--interval", "0.05"],
                   netns_pid=container_pid(cli.name))
    time.sleep(1)
    tk.start_server()
    time.sleep(1.5)
    tk.stop_server()
    time.sleep(1.5)
    tk.procs.stop("one-socket")
    lines = jsonl(out)
    ttls = [line.get("ttl") for line in lines]
    ports = {line["port"] for line in lines}
    assert len(ports) == 1  # really one socket throughout
    # Docker, then scopedns, then Docker again, on the same socket.
    phases = [t for i, t in enumerate(ttls) if t is not None and (i == 0 or ttls[i - 1] != t)]
    assert phases == [DOCKER_TTL, SCOPEDNS_TTL, DOCKER_TTL], ttls
    lost = sum(1 for line in lines if "error" in line)
    print(f"one-socket client: {len(lines)} queries, {lost} lost across two switches")
    assert lost <= 4, lines
    tk.start_server()


def test_sigterm_hands_back_to_docker_at_once(tk: TakeoverLab) -> None:
    app1, app2, cli = holders(tk)
    tk.wait_answerer(cli, cli.name, "scopedns")  # a take after a restart may still retry
    server = next(p for label, p in tk.procs.procs if label == "scopedns")
    server.send_signal(signal.SIGTERM)
    # Polled without waiting for the exit: the tables go first, the process exits after.
    took = tk.wait_answerer(cli, cli.name, "docker")
    reply = tk.dig(cli, "app")
    assert reply.ttls == {DOCKER_TTL} and reply.rdata == {ip(app1, tk), ip(app2, tk)}, reply
    print(f"SIGTERM to Docker answering: {took:.3f}s")
    tk.stop_server()  # waits for the exit
    assert all(tk.our_tables(box) == "" for box in (app1, app2, cli))
    tk.start_server()


def test_sigkill_falls_back_to_docker_and_restart_takes_over_once(tk: TakeoverLab) -> None:
    app1, app2, cli = holders(tk)
    tk.wait_answerer(cli, cli.name, "scopedns")  # a take after a restart may still retry
    tk.signal_server(signal.SIGKILL)
    # The table was owned by scopedns's netlink socket: the kernel removed it with the process.
    reply = tk.dig(cli, "app")
    assert reply.ttls == {DOCKER_TTL} and reply.rdata == {ip(app1, tk), ip(app2, tk)}, reply
    assert tk.our_tables(cli) == ""
    tk.start_server()
    tk.wait_answerer(cli, cli.name, "scopedns")  # a take after a restart may still retry
    ruleset = tk.our_tables(cli)
    assert ruleset.count(f"table ip {TABLE}") == 1 and ruleset.count("dnat to 127.0.0.11") \
        == 2 + 2, ruleset  # ours (udp, tcp) and Docker's own two, untouched


def test_release_removes_a_leftover_diversion(tk: TakeoverLab) -> None:
    _, _, cli = holders(tk)
    tk.stop_server()
    key = docker("inspect", "-f", "{{.NetworkSettings.SandboxKey}}", cli.name)
    # A table left behind without the owner flag (say, by a build that could not set it),
    # pointing at a port where nothing listens: DNS is cut off until it goes.
    leftover = (f"table ip {TABLE} {{\nchain output {{\ntype nat hook output priority -150;\n"
                "ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:9\n}\n}\n")
    subprocess.run(["nsenter", f"--net={key}", "nft", "-f", "-"], input=leftover, text=True,
                   check=True)
    assert tk.dig(cli, cli.name).rcode == "NOREPLY"
    proc = subprocess.run([sys.executable, "-m", "resolver", "release", key],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "1 diversions removed" in proc.stderr, proc.stderr
    assert tk.answerer(cli, cli.name) == "docker"
    assert tk.our_tables(cli) == ""
