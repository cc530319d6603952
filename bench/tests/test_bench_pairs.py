# The benchmark's same-run comparisons (bench/suite/pairs.py, rounds.py, report.py): servers
# measured in interleaved rounds, ratios per round with their spread, the verdict rule (every
# round on one side of the bound, at least MIN_PAIRS rounds, else "inconclusive"), the machine
# noise read from /proc, and the fake upstream's cacheable answers. No servers, no dnsperf.
from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.message
import pytest

from bench.suite import pairs, report, rounds
from bench.suite.fake_upstream import reply
from bench.suite.measure import Settings
from bench.suite.profiles import cacheable, forwarded, local_hits
from bench.suite.stats import CpuTimes, cpu_times, load_average, steal_share

PROC_STAT = """\
cpu  4705 356 584 3699 23 23 0 {steal} 0 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 0 0
intr 114930548 113199788 3 0 5 263 0 4 [... lots more numbers ...]
"""


def run(round_index: int, cpu: float, *, saturation: float = 1000.0, steal: float = 0.0,
        load: float = 1.0) -> dict[str, Any]:
    return {"round": round_index, "cpu_us_per_query": cpu, "saturation_qps": saturation,
            "p99_us": 100.0, "steal": steal, "load1": load}


def results_of(**per_peer: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {peer.replace("_", "-"): {key: {"runs": runs} for key, runs in profiles.items()}
            for peer, profiles in per_peer.items()}


# ----- /proc readings ----------------------------------------------------------------------------

def test_steal_share_is_the_stolen_part_of_all_cpu_time_between_readings() -> None:
    before = cpu_times(PROC_STAT.format(steal=100))
    after = cpu_times(PROC_STAT.format(steal=150).replace("4705", "4855"))
    assert before == CpuTimes(total=4705 + 356 + 584 + 3699 + 23 + 23 + 100, steal=100)
    assert steal_share(before, after) == pytest.approx(50 / 200)
    assert steal_share(after, after) == 0.0
    assert load_average("7.51 6.02 5.88 3/1234 5678\n") == 7.51
    with pytest.raises(ValueError):
        cpu_times("intr 1 2 3\n")


# ----- ratios and verdicts -----------------------------------------------------------------------

def test_ratio_is_taken_per_round_and_only_where_both_sides_measured() -> None:
    ours = [run(0, 10.0), run(1, 12.0), {"round": 2, "error": "dnsperf died"}, run(3, 9.0)]
    theirs = [run(0, 20.0), run(1, 10.0), run(2, 10.0), run(3, 10.0)]
    assert pairs.ratios(ours, theirs, "cpu_us_per_query") == [0.5, 1.2, 0.9]


@pytest.mark.parametrize(("values", "bound", "at_least", "expected"), [
    ([0.8, 0.9, 0.95], 1.0, False, "met"),
    ([1.1, 1.3, 1.05], 1.0, False, "NOT met"),
    ([0.8, 1.2, 0.9], 1.0, False, "inconclusive"),  # the rounds disagree: too wide
    ([0.5, 0.6], 1.0, False, "inconclusive"),  # too few rounds to decide
    ([2.1, 1.7, 1.9], 1.6, True, "met"),
    ([1.5, 1.7, 1.9], 1.6, True, "inconclusive"),
    ([1.0, 1.0, 1.0], 1.0, False, "met"),  # the bound itself meets "≤"
])
def test_verdict_needs_every_round_on_one_side(values: list[float], bound: float,
                                               at_least: bool, expected: str) -> None:
    assert pairs.verdict(values, bound, at_least) == expected


def test_pair_rows_compare_caches_off_with_caches_off_and_report_noise() -> None:
    results = results_of(
        scopedns={"a": [run(0, 14.0), run(1, 15.0), run(2, 13.0, steal=0.12)]},
        dnsmasq={"a": [run(0, 10.0), run(1, 10.0), run(2, 10.0, load=6.5)]},
        scopedns_nocache={"c": [run(0, 60.0), run(1, 40.0), run(2, 50.0)]},
        dnsmasq_nocache={"c": [run(0, 40.0), run(1, 40.0), run(2, 40.0)]},
    )
    rows = {(r["ours"], r["theirs"], r["profile"]): r for r in pairs.pair_rows(results)}
    assert set(rows) == {("scopedns", "dnsmasq", "a"),
                         ("scopedns-nocache", "dnsmasq-nocache", "c")}
    local = rows[("scopedns", "dnsmasq", "a")]
    assert local["cpu_us_per_query"] == {"median": 1.4, "min": 1.3, "max": 1.5, "n": 3,
                                         "order": "NOT met"}
    assert local["steal_max"] == 0.12 and local["load_max"] == 6.5
    assert rows[("scopedns-nocache", "dnsmasq-nocache", "c")]["cpu_us_per_query"][
        "order"] == "inconclusive"  # 1.5, 1.0, 1.25: the rounds disagree about "≤ 1"


def test_goals_are_judged_on_same_run_ratios() -> None:
    results = results_of(scopedns={"d": [run(i, 9.0) for i in range(3)]},
                         dnsmasq={"d": [run(i, 10.0) for i in range(3)]})
    goals = {g["label"]: g for g in pairs.goal_rows(results)}
    cached = goals["forwarding, caches on (d): CPU/query ≤ 1.0x dnsmasq"]
    assert cached["verdict"] == "met" and cached["ratio"]["median"] == pytest.approx(0.9)
    assert goals["CPU/query (a) ≤ 1.0x dnsmasq"]["verdict"] == "not measured"


def test_report_says_inconclusive_when_rounds_disagree() -> None:
    results = results_of(scopedns={"a": [run(0, 9.0), run(1, 11.0), run(2, 10.0)]},
                         dnsmasq={"a": [run(i, 10.0) for i in range(3)]})
    document = {"results": results}
    table = "\n".join(report.pairs_table(document))
    assert "| scopedns vs dnsmasq | (a) | 3 | 1.00 (0.90-1.10) |" in table
    assert "inconclusive (rounds disagree)" in table
    targets = "\n".join(report.targets_table(document))
    assert "| CPU/query (a) ≤ 1.0x dnsmasq | 1.00 (0.90-1.10) | 3 | inconclusive |" in targets


# ----- interleaving -------------------------------------------------------------------------------

def test_rounds_interleave_servers_and_reverse_the_order_every_other_round(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    measured: list[tuple[str, str]] = []

    def fake_measure(profile: Any, running: Any, *_: Any) -> dict[str, Any]:
        measured.append((running, profile.key))
        return {"error": "not run"}

    monkeypatch.setattr(rounds, "measure_once", fake_measure)
    world: Any = type("World", (), {"workdir": tmp_path})()
    running: Any = {name: name for name in ("scopedns", "dnsmasq", "dnsmasq-nocache")}
    chosen = [local_hits([]), forwarded(3)]
    progress: Any = type("Quiet", (), {"step": lambda self, text: None})()
    runs = rounds.measure_rounds(running, chosen, Settings(1, 1, 3, 1000), lambda a: a, world,
                                 progress)
    assert measured == [
        ("scopedns", "a"), ("dnsmasq", "a"),
        ("scopedns", "c"), ("dnsmasq", "c"), ("dnsmasq-nocache", "c"),
        ("dnsmasq", "a"), ("scopedns", "a"),
        ("dnsmasq-nocache", "c"), ("dnsmasq", "c"), ("scopedns", "c"),
        ("scopedns", "a"), ("dnsmasq", "a"),
        ("scopedns", "c"), ("dnsmasq", "c"), ("dnsmasq-nocache", "c"),
    ]
    assert [r["round"] for r in runs["dnsmasq"]["a"]] == [0, 1, 2]
    assert "a" not in runs["dnsmasq-nocache"]  # the caches-off variants only forward


# ----- the fake upstream's TTLs ------------------------------------------------------------------

@pytest.mark.parametrize(("name", "ttl"), [("f1.bench.invalid", 0),
                                          ("f1.ttl300.bench.invalid", 300),
                                          ("f1.TTL60.bench.invalid", 60)])
def test_fake_upstream_ttl_comes_from_a_ttl_label(name: str, ttl: int) -> None:
    answer = dns.message.from_wire(reply(dns.message.make_query(name, "A").to_wire()) or b"")
    assert [rrset.ttl for rrset in answer.answer] == [ttl]


def test_cacheable_profile_asks_names_with_a_long_ttl() -> None:
    profile = cacheable(count=2)
    assert profile.forwarded and profile.key == "d"
    assert profile.streams[0].lines == ("f0.ttl300.bench.invalid A",
                                        "f1.ttl300.bench.invalid A")


def test_the_metrics_cost_is_judged_as_scopedns_with_http_over_scopedns_without() -> None:
    results = results_of(scopedns={"a": [run(0, 10.0), run(1, 10.0), run(2, 10.0)]},
                         scopedns_http={"a": [run(0, 10.1), run(1, 10.2), run(2, 10.5)]})
    goal = next(row for row in pairs.goal_rows(results) if "--http" in row["label"])
    assert goal["verdict"] == "inconclusive"  # 1.05 in one round: past the 3 % bound
    assert goal["ratio"]["median"] == pytest.approx(1.02)
    cheap = results_of(scopedns={"a": [run(i, 10.0) for i in range(3)]},
                       scopedns_http={"a": [run(i, 10.1) for i in range(3)]})
    goal = next(row for row in pairs.goal_rows(cheap) if "--http" in row["label"])
    assert goal["verdict"] == "met"
    assert [row["theirs"] for row in pairs.pair_rows(cheap)] == ["scopedns-http"]
