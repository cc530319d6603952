# Docker's own path in the benchmark (profile t, peer scopedns-takeover): the query file asks
# only local names, the same for every namespace; the side-by-side dnsperf runs share the
# clients and the rate and add up as one run; only Docker and scopedns --takeover take it,
# interleaved and compared with each other; the readiness checks read `ss` and dig output; the
# Docker lock is taken once for both Docker peers. No servers, no dnsperf, no Docker.
from __future__ import annotations

import fcntl
import threading
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from bench.suite import docker_peer, pairs, report, rounds, takeover_peer
from bench.suite.dnsperf import Target, side_by_side_argvs
from bench.suite.measure import Settings
from bench.suite.names import Endpoint
from bench.suite.procs import Cleanup
from bench.suite.profiles import all_profiles, docker_path, local_hits
from bench.suite.stats import DnsperfSummary, merge_concurrent, split

NAMES = [Endpoint(f"App{i}", "net0", IPv4Address(f"127.1.0.{i + 1}"), ()) for i in range(3)]


def test_docker_path_asks_every_local_name_a_and_aaaa_the_same_from_each_namespace() -> None:
    profile = docker_path(NAMES)
    assert profile.netns and profile.key == "t" and not profile.edns
    first, second = profile.streams
    assert first == second and first.client is None
    assert first.lines[:4] == ("app0 A", "app0 AAAA", "app0.net0 A", "app0.net0 AAAA")
    # Exactly the aliases a lab container carries (bench.suite.docker_peer.build_lab): nothing
    # asked is unknown to the container's view, so nothing is forwarded.
    aliases = {n for e in NAMES for n in (e.container.lower(), e.qualified.lower())}
    assert {line.split()[0] for line in first.lines} == aliases
    assert "t" in all_profiles([(NAMES[0], NAMES)])


def test_split_shares_out_whole_numbers_and_never_zero() -> None:
    assert split(4, 2) == [2, 2]
    assert split(5, 2) == [3, 2]
    assert split(20001, 2) == [10001, 10000]
    assert split(1, 2) == [1, 1]  # dnsperf takes no -c 0


def test_side_by_side_runs_add_up_their_rates_over_the_longest_run() -> None:
    one = DnsperfSummary(sent=100, completed=99, lost=1, qps=10_000.0, runtime=3.0,
                         rcodes={"NOERROR": 99})
    two = DnsperfSummary(sent=50, completed=50, lost=0, qps=8_000.0, runtime=3.2,
                         rcodes={"NOERROR": 45, "NXDOMAIN": 5})
    merged = merge_concurrent([one, two])
    assert (merged.sent, merged.completed, merged.lost) == (150, 149, 1)
    assert merged.qps == 18_000.0 and merged.runtime == 3.2
    assert merged.rcodes == {"NOERROR": 144, "NXDOMAIN": 5}
    assert merged.loss == pytest.approx(1 / 150)


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_each_dnsperf_runs_in_its_own_namespace_with_a_share_of_clients_and_rate() -> None:
    prefixes = (("nsenter", "-n", "-t", "11"), ("nsenter", "-n", "-t", "22"))
    target = Target("127.0.0.11", 53, from_clients=False, host_source=None,
                    prefix=prefixes[0], stream_prefixes=prefixes)
    files = [Path("/q0"), Path("/q1")]
    fixed = side_by_side_argvs(docker_path(NAMES), target, files, 8.0, 20_000.0, True)
    assert [argv[:4] for argv in fixed] == [list(p) for p in prefixes]
    assert [option(a, "-d") for a in fixed] == ["/q0", "/q1"]
    assert sum(int(option(a, "-Q")) for a in fixed) == 20_000
    assert sum(int(option(a, "-c")) for a in fixed) == 4
    assert sum(int(option(a, "-q")) for a in fixed) == 500
    assert all(option(a, "-l") == "8" and option(a, "-s") == "127.0.0.11" and "-v" in a
               for a in fixed)
    unthrottled = side_by_side_argvs(docker_path(NAMES), target, files, 3.0, None, False)
    assert all("-Q" not in a for a in unthrottled)
    assert sum(int(option(a, "-q")) for a in unthrottled) == 100
    with pytest.raises(ValueError, match="2 container namespaces"):
        side_by_side_argvs(docker_path(NAMES), Target("127.0.0.1", 53, True, "127.0.0.1"),
                           files, 3.0, None, False)


def test_only_docker_and_the_takeover_take_docker_path_and_the_takeover_nothing_else() -> None:
    path, hits = docker_path(NAMES), local_hits(NAMES)
    assert [n for n in ("docker", "scopedns-takeover", "scopedns", "dnsmasq")
            if rounds.applies(n, path)] == ["docker", "scopedns-takeover"]
    assert rounds.applies("docker", hits) and not rounds.applies("scopedns-takeover", hits)


def test_docker_and_the_takeover_alternate_in_reversed_order_every_other_round(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    measured: list[tuple[str, str]] = []

    def fake_measure(profile: Any, running: Any, *_: Any) -> dict[str, Any]:
        measured.append((running, profile.key))
        return {"error": "not run"}

    monkeypatch.setattr(rounds, "measure_once", fake_measure)
    world: Any = type("World", (), {"workdir": tmp_path})()
    running: Any = {name: name for name in ("docker", "scopedns-takeover")}
    progress: Any = type("Quiet", (), {"step": lambda self, text: None})()
    rounds.measure_rounds(running, [local_hits(NAMES), docker_path(NAMES)],
                          Settings(1, 1, 2, 1000), lambda a: a, world, progress)
    assert measured == [("docker", "a"), ("docker", "t"), ("scopedns-takeover", "t"),
                        ("docker", "a"), ("scopedns-takeover", "t"), ("docker", "t")]


def run(round_index: int, cpu: float, saturation: float, p99: float) -> dict[str, Any]:
    return {"round": round_index, "cpu_us_per_query": cpu, "saturation_qps": saturation,
            "p99_us": p99}


def test_the_takeover_is_compared_with_docker_on_docker_path_and_judged() -> None:
    results = {
        "scopedns": {"a": {"runs": [run(i, 10.0, 50_000.0, 100.0) for i in range(3)]}},
        "scopedns-takeover": {"t": {"runs": [run(i, 8.0, 45_000.0, 900.0) for i in range(3)]}},
        "docker": {"a": {"runs": [run(i, 40.0, 20_000.0, 800.0) for i in range(3)]},
                   "t": {"runs": [run(i, 20.0, 20_000.0, 800.0) for i in range(3)]}},
    }
    rows = {(r["ours"], r["profile"]): r for r in pairs.pair_rows(results)}
    assert set(rows) == {("scopedns", "a"), ("scopedns-takeover", "t")}
    assert rows[("scopedns-takeover", "t")]["cpu_us_per_query"]["median"] == pytest.approx(0.4)
    verdicts = {g["label"]: g["verdict"] for g in pairs.goal_rows(results)}
    assert verdicts["takeover on Docker's path (t): saturation ≥ 2x Docker"] == "met"
    assert verdicts["takeover on Docker's path (t): CPU/query ≤ 0.5x dockerd"] == "met"
    assert verdicts["takeover on Docker's path (t): p99 at the fixed rate ≤ Docker"] \
        == "NOT met"


def test_report_says_how_docker_path_was_asked_only_when_it_was() -> None:
    asked = {"dnsperf": {"side_by_side": "(t): 2 dnsperf at once"}}
    assert "Docker's own path (t): 2 dnsperf at once" in report.docker_path_text(asked)[0]
    assert report.docker_path_text({"dnsperf": {}}) == []
    spread = {"median": 1.0, "min": 1.0, "max": 1.0}
    document = {"results": {"scopedns-takeover": {"t": {
        "runs": [{"rcodes": {"NOERROR": 10}}], "saturation_qps": spread,
        "cpu_us_per_query": spread, "p50_us": spread, "p99_us": spread, "p999_us": spread}}}}
    assert "| scopedns-takeover | (t) | 1 | 1.0 | 1 | 1 | 1 | NOERROR 100% |" \
        in report.results_table(document)


SS = """\
UNCONN 0      0      127.0.0.11:40001 0.0.0.0:* users:(("dockerd",pid=700,fd=31))
UNCONN 0      0      127.0.0.11:51234 0.0.0.0:* users:(("python",pid=4242,fd=1030))
"""


def test_a_namespace_is_ours_only_with_our_table_and_our_listener() -> None:
    assert takeover_peer.listener_pids(SS) == {700, 4242}
    assert takeover_peer.held_by(True, SS, [4242, 4243])
    assert not takeover_peer.held_by(True, SS, [999])  # another scopedns's table
    assert not takeover_peer.held_by(False, SS, [4242])  # listener, but the table is gone
    assert not takeover_peer.held_by(True, "", [4242])


def test_probes_expect_the_address_of_the_container_holding_each_name() -> None:
    lab = docker_peer.Lab("sbench-1", "10.9.0.1",
                          (IPv4Address("10.9.0.2"), IPv4Address("10.9.0.3")), (11, 22))
    assert docker_peer.probes(NAMES, lab) == [
        ("app0", "10.9.0.2"), ("app0.net0", "10.9.0.2"),
        ("app2", "10.9.0.2"), ("app2.net0", "10.9.0.2")]  # 3 names over 2 containers


def test_both_docker_peers_share_one_hold_of_the_docker_lock(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lock = tmp_path / "docker.lock"
    monkeypatch.setattr(docker_peer, "LOCK", str(lock))
    docker, takeover = Cleanup(), Cleanup()
    docker_peer.hold_lock(docker)
    second = threading.Thread(target=docker_peer.hold_lock, args=(takeover,), daemon=True)
    second.start()
    second.join(5)
    assert not second.is_alive()  # a second open of the file would wait for the first

    def free() -> bool:
        with lock.open("a") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

    assert not free()
    takeover.run()
    assert not free()  # Docker's peer still runs
    docker.run()
    assert free()
