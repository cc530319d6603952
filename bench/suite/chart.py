# The PNG chart of a run: saturation qps, CPU microseconds per query and p99 latency per
# server, one bar per profile, whiskers from the min to the max of the runs. Needs matplotlib
# (the `bench` extra); without it the chart is skipped and the run says so.
from __future__ import annotations

from pathlib import Path
from typing import Any

PANELS = (("saturation_qps", "saturation (qps, higher is better)"),
          ("cpu_us_per_query", "server CPU µs/query at the fixed rate"),
          ("p99_us", "p99 latency µs at the fixed rate"))
PROFILES = ("a", "b", "c", "d", "t")
BAR_WIDTH = 0.16


def bars(document: dict[str, Any], measure: str,
         profile: str) -> tuple[list[float], list[list[float]]]:
    """Heights and (below, above) whiskers per server; zero where not measured."""
    heights, below, above = [], [], []
    for result in document["results"].values():
        found = result.get(profile, {}).get(measure) if "error" not in result else None
        heights.append(found["median"] if found else 0.0)
        below.append(found["median"] - found["min"] if found else 0.0)
        above.append(found["max"] - found["median"] if found else 0.0)
    return heights, [below, above]


def draw(document: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib missing (pip install -e '.[bench]'): no chart", flush=True)
        return None
    servers = list(document["results"])
    figure, axes = plt.subplots(1, len(PANELS), figsize=(15, 4.5))
    for axis, (measure, title) in zip(axes, PANELS, strict=True):
        for offset, profile in enumerate(PROFILES):
            heights, whiskers = bars(document, measure, profile)
            middle = (len(PROFILES) - 1) / 2
            positions = [i + (offset - middle) * BAR_WIDTH for i in range(len(servers))]
            axis.bar(positions, heights, BAR_WIDTH, yerr=whiskers, capsize=2,
                     label=f"({profile})")
        axis.set_title(title, fontsize=10)
        if measure == "p99_us":
            axis.set_yscale("log")  # forwarded (c) is orders of magnitude above local hits
        axis.set_xticks(range(len(servers)), servers, rotation=30, fontsize=8)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"make bench, {document['date']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
