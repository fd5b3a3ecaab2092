"""One PNG per scenario and kernel: the scenario's key series over time, the failure, the remedies and each alert's
firing (scaled rules) marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

MARKS = {"failure": ("red", "failure"), "compact_memory": ("grey", "compact_memory"),
         "release": ("grey", "pins released"), "online": ("black", "cgroups kept online"),
         "remove_online": ("grey", "online cgroups removed"), "drop_caches": ("grey", "drop_caches")}


def plot(result: dict[str, Any], path: Path) -> None:
    start = result["marks"]["start"]
    titles = [p["title"] for p in result["plot"]]
    figure, axes = plt.subplots(len(titles), 1, figsize=(9, 1.9 * len(titles) + 0.8), sharex=True, squeeze=False)
    firings: dict[str, float] = {}
    for series in result["alerts"]:
        labels = series["labels"]
        if labels.get("lab_rules") == "scaled":
            name = labels["alertname"]
            firings[name] = min(firings.get(name, float("inf")), series["values"][0][0] - start)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, title in zip(axes[:, 0], titles):
        for series in result["series"].get(title, []):
            times = [t - start for t, _ in series["values"]]
            axis.plot(times, [v for _, v in series["values"]], linewidth=1.2)
        axis.set_title(title, fontsize=8, loc="left")
        axis.tick_params(labelsize=7)
        for mark, (colour, _) in MARKS.items():
            if mark in result["marks"]:
                axis.axvline(result["marks"][mark] - start, color=colour, linewidth=1.5 if mark == "failure" else 1,
                             linestyle="-" if mark == "failure" else ":")
        for number, (name, when) in enumerate(sorted(firings.items(), key=lambda item: item[1])):
            axis.axvline(when, color=colours[number % len(colours)], linestyle="--", linewidth=1)
    handles = [Line2D([], [], color=colours[n % len(colours)], linestyle="--", label=f"{name} fires")
               for n, (name, _) in enumerate(sorted(firings.items(), key=lambda item: item[1]))]
    handles += [Line2D([], [], color=c, linestyle="-" if m == "failure" else ":", label=label)
                for m, (c, label) in MARKS.items() if m in result["marks"]]
    figure.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.975), ncol=3, fontsize=7,
                  frameon=False)
    axes[-1, 0].set_xlabel("seconds since the guest's start", fontsize=8)
    figure.suptitle(f"{result['scenario']} on {result['kernel']}", fontsize=9, y=0.995)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.6 / (1.9 * len(titles) + 0.8)))
    figure.savefig(path, dpi=90)
    plt.close(figure)
