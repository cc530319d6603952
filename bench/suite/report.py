# The outputs of a run: bench/results/<date>.json, the PNG chart beside it, and the README's
# "Benchmarks" section (a results table, the same-run ratios of scopedns to each peer with their
# spread (scopedns --takeover to Docker on Docker's own path, profile t), the targets
# judged on those ratios, the scale rows and the engine figures).
# Only the text between the bench markers is rewritten.
# Redraw from a results file: python -m bench.suite.report bench/results/<date>.json
from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.suite import pairs
from bench.suite.chart import draw
from bench.suite.stats import rss_per_thousand

BEGIN = "<!-- bench:begin (written by make bench; do not edit by hand) -->"
END = "<!-- bench:end -->"
HEADING = "## Benchmarks"
PROFILE_ORDER = ("a", "b", "c", "d", "t")


def cell(measure: dict[str, float] | None, pattern: str = "{:,.0f}") -> str:
    if not measure:
        return "-"
    low, high = pattern.format(measure["min"]), pattern.format(measure["max"])
    middle = pattern.format(measure["median"])
    return middle if low == high else f"{middle} ({low}-{high})"


def answers(result: dict[str, Any]) -> str:
    """The rcodes of the last fixed-rate run, so an unequal peer is visible."""
    runs = [r for r in result.get("runs", []) if "rcodes" in r]
    if not runs:
        return "-"
    codes: dict[str, int] = runs[-1]["rcodes"]
    total = sum(codes.values()) or 1
    return ", ".join(f"{name} {count / total:.0%}" for name, count in sorted(codes.items()))


def results_table(document: dict[str, Any]) -> list[str]:
    lines = ["| server | profile | saturation qps | CPU µs/query | p50 µs | p99 µs | p99.9 µs "
             "| answers |", "|---|---|---|---|---|---|---|---|"]
    for peer, per_profile in document["results"].items():
        if "error" in per_profile:
            lines.append(f"| {peer} | - | skipped: {per_profile['error']} | | | | | |")
            continue
        for key in PROFILE_ORDER:
            if key not in per_profile:
                continue
            result = per_profile[key]
            lines.append(
                f"| {peer} | ({key}) | {cell(result['saturation_qps'])} "
                f"| {cell(result['cpu_us_per_query'], '{:.1f}')} | {cell(result['p50_us'])} "
                f"| {cell(result['p99_us'])} | {cell(result['p999_us'])} | {answers(result)} |")
    return lines


def ratio_cell(found: dict[str, Any] | None) -> str:
    if not found:
        return "-"
    low, middle, high = (f"{found[k]:.2f}" for k in ("min", "median", "max"))
    return middle if low == high else f"{middle} ({low}-{high})"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def fmt_load(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def order_text(found: dict[str, Any] | None, ours: str, theirs: str) -> str:
    """Who used less CPU per query, if every round says the same (bench.suite.pairs)."""
    if not found:
        return "-"
    if found["order"] == "met":
        return f"{ours} in every round"
    if found["order"] == "NOT met":
        return f"{theirs} in every round"
    return f"inconclusive ({found['n']} rounds)" if found["n"] < pairs.MIN_PAIRS \
        else "inconclusive (rounds disagree)"


def pairs_table(document: dict[str, Any]) -> list[str]:
    rows = ["| ours vs peer | profile | rounds | CPU/query ratio | saturation ratio | p99 ratio "
            "| steal max | load max | less CPU/query |", "|---|---|---|---|---|---|---|---|---|"]
    for row in document.get("pairs") or pairs.pair_rows(document["results"]):
        cpu = row["cpu_us_per_query"]
        rows.append(
            f"| {row['ours']} vs {row['theirs']} | ({row['profile']}) | {cpu['n'] if cpu else 0} "
            f"| {ratio_cell(cpu)} | {ratio_cell(row['saturation_qps'])} "
            f"| {ratio_cell(row['p99_us'])} | {percent(row['steal_max'])} "
            f"| {fmt_load(row['load_max'])} "
            f"| {order_text(cpu, row['ours'], row['theirs'])} |")
    return rows


def targets_table(document: dict[str, Any]) -> list[str]:
    rows = ["| target | same-run ratio, median (min-max) | rounds | result |", "|---|---|---|---|"]
    for goal in document.get("goals") or pairs.goal_rows(document["results"]):
        ratio = goal["ratio"]
        rows.append(f"| {goal['label']} | {ratio_cell(ratio)} | {ratio['n'] if ratio else 0} "
                    f"| {goal['verdict']} |")
    return rows


def scale_table(document: dict[str, Any]) -> list[str]:
    rows = ["| snapshot | load (s) | RSS (MiB) | CPU µs/query |", "|---|---|---|---|"]
    for row in document.get("scale", []):
        plural = "s" if row["networks"] != 1 else ""
        label = f"{row['containers']:,} containers / {row['networks']:,} network{plural}"
        if "error" in row:
            rows.append(f"| {label} | failed: {row['error']} | | |")
            continue
        rows.append(f"| {label} | {row['load_seconds']:.2f} | {row['rss_bytes'] / 2**20:.0f} "
                    f"| {cell(row['cpu_us_per_query'], '{:.1f}')} |")
    slope = rss_per_thousand(document.get("scale", []))
    if slope is not None:
        rows += ["", f"RSS per 1,000 containers: {slope / 2**20:.1f} MiB (the slope from the "
                 "smallest row to the largest)."]
    return rows


def flatten(figures: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Numbers and short strings of a nested JSON object, keyed by their dotted path."""
    found: list[tuple[str, Any]] = []
    for key, value in figures.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            found += flatten(value, f"{path}.")
        elif isinstance(value, int | float | str) and len(str(value)) < 60:
            found.append((path, value))
    return found


def engine_table(figures: dict[str, Any]) -> list[str]:
    if "skipped" in figures or not figures:
        return [f"skipped: {figures.get('skipped', 'no figures')}"]
    rows = ["| figure | value |", "|---|---|"]
    return rows + [f"| {path} | {value} |" for path, value in flatten(figures)]


def docker_path_text(settings: dict[str, Any]) -> list[str]:
    """How Docker's own path (profile t) was measured, when it was."""
    how = settings.get("dnsperf", {}).get("side_by_side")
    if not how:
        return []
    return [f"Docker's own path {how}. docker: Docker's embedded resolver, CPU = dockerd's; "
            "scopedns-takeover: `scopedns serve --takeover` on a lab of its own with the same "
            "names, CPU = scopedns's. Every name asked is a local network alias (nothing is "
            "forwarded).", ""]


def section(document: dict[str, Any], chart: Path | None, readme: Path) -> str:
    settings, machine = document["settings"], document["machine"]
    lines = [
        f"`make bench` on {document['date']} ({machine['cpu']}, {machine['usable_cpus']} CPUs; "
        f"load {' '.join(machine['loadavg_start'])} at start): {settings['runs']} runs per "
        f"measure, median (min-max); saturation = highest qps with ≤ 0.1 % loss over "
        f"{settings['seconds']:g} s (dnsperf -c 4 -q 100); CPU and latency at "
        f"{settings['rate']:,.0f} qps over {settings['fixed_seconds']:g} s. Server CPU "
        f"{settings['pinning']['server_cpu']}, dnsperf CPU {settings['pinning']['dnsperf_cpus']}. "
        "Profiles: " + "; ".join(f"({k}) {v}" for k, v in settings["profiles"].items()) + ".",
        "", *results_table(document), "", *docker_path_text(settings),
        "Same-run ratios (ours/peer per interleaved round: median (min-max) over the rounds; "
        "servers measured in turn, A B then B A, every round):", "", *pairs_table(document), "",
        f"Targets: a ratio decides only when every round's ratio lies on the same side of "
        f"the bound, in at least {pairs.MIN_PAIRS} rounds; otherwise the spread is too wide "
        "and the result is inconclusive.", "", *targets_table(document), "",
        "Scale (scopedns alone, profile (a)):", "", *scale_table(document), "",
        "Engine figures (`python -m bench.engine_latency`):", "",
        *engine_table(document.get("engine_latency") or {}), "", "Notes:", "",
    ]
    for peer, result in document["results"].items():
        for note in result.get("notes", []):
            lines.append(f"- {peer}: {note}")
    if chart is not None:
        lines += ["", f"![make bench chart]({os.path.relpath(chart, readme.parent)})"]
    return "\n".join(lines)


def update_readme(readme: Path, body: str) -> None:
    """Rewrite only the marked block; add the section at the end the first time."""
    text = readme.read_text() if readme.exists() else ""
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\n{block}\n"
    readme.write_text(text)


def render(document: dict[str, Any], path: Path, readme: Path) -> None:
    """The chart beside the JSON file at `path`, and the README section."""
    chart = draw(document, path.with_suffix(".png"))
    update_readme(readme, section(document, chart, readme))
    print(f"bench: wrote {path}" + (f", {chart}" if chart else "") + f" and {readme.name}")


def publish(document: dict[str, Any], output: Path, readme: Path, began: datetime) -> None:
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"{began.strftime('%Y-%m-%dT%H%MZ')}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    render(document, path, readme)


def main() -> None:
    """Redraw the chart and the README section from a results file (no measuring)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results", type=Path, help="bench/results/<date>.json")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args()
    render(json.loads(args.results.read_text()), args.results, args.readme)


if __name__ == "__main__":
    main()
