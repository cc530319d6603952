# The outputs of a run: bench/results/<date>.json, the PNG chart beside it, and the README's
# "Benchmarks" section (a results table, the targets checked against the measures, the
# scale rows and the engine figures). Only the text between the bench markers is rewritten.
# Redraw from a results file: python -m bench.suite.report bench/results/<date>.json
from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.suite.chart import draw

BEGIN = "<!-- bench:begin (written by make bench; do not edit by hand) -->"
END = "<!-- bench:end -->"
HEADING = "## Benchmarks"
PROFILE_ORDER = ("a", "b", "c")


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


def median(document: dict[str, Any], peer: str, profile: str, measure: str) -> float | None:
    found = document["results"].get(peer, {}).get(profile, {}).get(measure)
    return found["median"] if found else None


def check(label: str, ours: float | None, theirs: float | None, factor: float,
          at_least: bool, unit: str) -> list[str]:
    """One target row: scopedns's median against the peer's median times `factor`."""
    if ours is None or theirs is None:
        return [f"| {label} | not measured | - |"]
    bound = theirs * factor
    met = ours >= bound if at_least else ours <= bound
    sign = "≥" if at_least else "≤"
    pattern = "{:,.1f}" if unit == "µs" and bound < 100 else "{:,.0f}"
    return [f"| {label} | {pattern.format(ours)} {unit} {sign} {pattern.format(bound)} {unit} | "
            f"{'met' if met else 'NOT met'} |"]


def targets_table(document: dict[str, Any]) -> list[str]:
    def of(peer: str, profile: str, measure: str) -> float | None:
        return median(document, peer, profile, measure)

    rows = ["| target | measured (scopedns vs bound) | result |", "|---|---|---|"]
    rows += check("saturation (a) ≥ 1.6x Docker", of("scopedns", "a", "saturation_qps"),
                  of("docker", "a", "saturation_qps"), 1.6, True, "qps")
    for key in ("a", "b"):
        rows += check(f"CPU/query at the fixed rate ({key}) ≤ dnsmasq",
                      of("scopedns", key, "cpu_us_per_query"),
                      of("dnsmasq", key, "cpu_us_per_query"), 1.0, False, "µs")
        rows += check(f"p99 at the fixed rate ({key}) ≤ dnsmasq", of("scopedns", key, "p99_us"),
                      of("dnsmasq", key, "p99_us"), 1.0, False, "µs")
    rows += check("(b) saturation within 10 % of (a)", of("scopedns", "b", "saturation_qps"),
                  of("scopedns", "a", "saturation_qps"), 0.9, True, "qps")
    rows += check("(b) CPU/query within 10 % of (a)", of("scopedns", "b", "cpu_us_per_query"),
                  of("scopedns", "a", "cpu_us_per_query"), 1.1, False, "µs")
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
        "", *results_table(document), "", "Targets:", "", *targets_table(document), "",
        "Scale (scopedns alone, profile (a)):", "", *scale_table(document), "",
        "Engine figures (`python -m bench.engine_latency`):", "",
        *engine_table(document.get("engine_latency") or {}), "", "Notes:", "",
    ]
    for peer, result in document["results"].items():
        for note in result.get("notes", []):
            lines.append(f"- {peer}: {note}")
    if chart is not None:
        lines += ["", f"![make bench chart]({chart.relative_to(readme.parent)})"]
    return "\n".join(lines)


def update_readme(readme: Path, body: str) -> None:
    """Rewrite only the marked block; add the section at the end the first time."""
    text = readme.read_text()
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
