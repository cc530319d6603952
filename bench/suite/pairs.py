# Same-run comparisons (pure): every round of a run measures each server once per profile,
# interleaved (A B, then B A, ...), so the ratio scopedns/peer of one round compares two
# measurements taken minutes apart on the same machine state. Per pair and measure: the ratios
# of all rounds, their median and spread, and a verdict against a target. The rule for a
# verdict: at least MIN_PAIRS rounds, and every round's ratio on the same side of the bound;
# otherwise the spread is too wide to conclude and the verdict is "inconclusive".
from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.suite.profiles import DOCKER_PATH

MIN_PAIRS = 3  # with fewer, one noisy round decides
RATIO_MEASURES = ("cpu_us_per_query", "saturation_qps", "p99_us")
OURS = ("scopedns", "scopedns-nocache", "scopedns-takeover")
INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Goal:
    """A target of the issue as a same-run ratio: ours/theirs ≤ bound (or ≥ when at_least)."""

    label: str
    ours: str
    theirs: str
    profile: str
    measure: str
    bound: float
    at_least: bool = False


GOALS = (
    Goal("CPU/query (a) ≤ 1.0x dnsmasq", "scopedns", "dnsmasq", "a", "cpu_us_per_query", 1.0),
    Goal("CPU/query (b) ≤ 1.1x dnsmasq", "scopedns", "dnsmasq", "b", "cpu_us_per_query", 1.1),
    Goal("saturation (a) ≥ dnsmasq", "scopedns", "dnsmasq", "a", "saturation_qps", 1.0, True),
    Goal("saturation (a) ≥ 1.6x Docker", "scopedns", "docker", "a", "saturation_qps", 1.6, True),
    Goal("forwarding, caches off (c): CPU/query ≤ 1.5x dnsmasq", "scopedns-nocache",
         "dnsmasq-nocache", "c", "cpu_us_per_query", 1.5),
    Goal("forwarding, caches on (d): CPU/query ≤ 1.0x dnsmasq", "scopedns", "dnsmasq", "d",
         "cpu_us_per_query", 1.0),
    Goal("metrics on (--http): CPU/query (a) ≤ 1.03x without", "scopedns-http", "scopedns", "a",
         "cpu_us_per_query", 1.03),
    Goal("revision vs BENCH_BASELINE: CPU/query (a) ≤ 1.03x", "scopedns", "scopedns-baseline",
         "a", "cpu_us_per_query", 1.03),
    Goal("revision vs BENCH_BASELINE: saturation (a) ≥ 0.97x", "scopedns", "scopedns-baseline",
         "a", "saturation_qps", 0.97, True),
    Goal("takeover on Docker's path (t): saturation ≥ 2x Docker", "scopedns-takeover",
         "docker", DOCKER_PATH, "saturation_qps", 2.0, True),
    Goal("takeover on Docker's path (t): CPU/query ≤ 0.5x dockerd", "scopedns-takeover",
         "docker", DOCKER_PATH, "cpu_us_per_query", 0.5),
    Goal("takeover on Docker's path (t): p99 at the fixed rate ≤ Docker", "scopedns-takeover",
         "docker", DOCKER_PATH, "p99_us", 1.0),
)


def partner(peer: str, profile: str) -> str:
    """The scopedns variant a peer is compared with: caches off against caches off, and
    scopedns --takeover against Docker on Docker's own path (t)."""
    if profile == DOCKER_PATH:
        return "scopedns-takeover"
    return "scopedns-nocache" if peer.endswith("-nocache") else "scopedns"


def by_round(runs: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {run["round"]: run for run in runs if "error" not in run and "round" in run}


def ratios(ours: Sequence[dict[str, Any]], theirs: Sequence[dict[str, Any]],
           measure: str) -> list[float]:
    """ours/theirs for every round in which both sides measured `measure`."""
    mine, other = by_round(ours), by_round(theirs)
    found = []
    for index in sorted(mine.keys() & other.keys()):
        a, b = mine[index].get(measure), other[index].get(measure)
        if a is not None and b:
            found.append(a / b)
    return found


def verdict(values: Sequence[float], bound: float, at_least: bool) -> str:
    """"met" / "NOT met" when every round agrees (and there are MIN_PAIRS of them)."""
    if len(values) < MIN_PAIRS:
        return INCONCLUSIVE
    on_side = [v >= bound if at_least else v <= bound for v in values]
    if all(on_side):
        return "met"
    if not any(on_side):
        return "NOT met"
    return INCONCLUSIVE


def summary(values: Sequence[float]) -> dict[str, Any] | None:
    """Median, min, max and count of the rounds' ratios; whether they agree on a side of 1."""
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values), "order": verdict(values, 1.0, at_least=False)}


def noise(runs: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The worst steal share and load seen while these runs were measured."""
    steal = [r["steal"] for r in runs if r.get("steal") is not None]
    load = [r["load1"] for r in runs if r.get("load1") is not None]
    return {"steal_max": max(steal) if steal else None, "load_max": max(load) if load else None}


def runs_of(results: dict[str, Any], peer: str, profile: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = results.get(peer, {}).get(profile, {}).get("runs", [])
    return found


def pair_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (scopedns variant, peer, profile) measured in the same rounds."""
    rows = []
    for peer, per_profile in results.items():
        if peer in OURS or "error" in per_profile:
            continue
        for profile in sorted(key for key in per_profile if isinstance(per_profile[key], dict)):
            ours = partner(peer, profile)
            mine, theirs = runs_of(results, ours, profile), runs_of(results, peer, profile)
            if not mine or not theirs:
                continue
            row: dict[str, Any] = {"ours": ours, "theirs": peer, "profile": profile,
                                   **noise([*mine, *theirs])}
            for measure in RATIO_MEASURES:
                row[measure] = summary(ratios(mine, theirs, measure))
            rows.append(row)
    return rows


def goal_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for goal in GOALS:
        found = ratios(runs_of(results, goal.ours, goal.profile),
                       runs_of(results, goal.theirs, goal.profile), goal.measure)
        rows.append({"label": goal.label, "bound": goal.bound, "at_least": goal.at_least,
                     "ratio": summary(found),
                     "verdict": verdict(found, goal.bound, goal.at_least) if found
                     else "not measured"})
    return rows
