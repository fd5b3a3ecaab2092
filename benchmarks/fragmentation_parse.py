"""Time to read and parse this host's /proc/buddyinfo, /proc/pagetypeinfo and /proc/zoneinfo, and to compute the
fragmentation indices from buddyinfo; the read of pagetypeinfo is where the kernel walks its free lists.

    python benchmarks/fragmentation_parse.py [--rounds 200] [--procfs /proc]

Prints, per step, the median and worst time of one round in microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kmem_exporter.parsers.buddyinfo import parse_buddyinfo  # noqa: E402
from kmem_exporter.parsers.extfrag import compute_indices  # noqa: E402
from kmem_exporter.parsers.pagetypeinfo import parse_pagetypeinfo  # noqa: E402
from kmem_exporter.parsers.zoneinfo import parse_zoneinfo  # noqa: E402


def measure(rounds: int, step: Callable[[], object]) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1e6)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--procfs", type=Path, default=Path("/proc"))
    args = parser.parse_args()
    proc: Path = args.procfs
    texts = {name: (proc / name).read_text() for name in ("buddyinfo", "pagetypeinfo", "zoneinfo")}
    zones = parse_buddyinfo(texts["buddyinfo"])
    steps: dict[str, Callable[[], object]] = {
        "read buddyinfo": lambda: (proc / "buddyinfo").read_text(),
        "parse buddyinfo": lambda: parse_buddyinfo(texts["buddyinfo"]),
        "compute extfrag + unusable index": lambda: compute_indices(zones),
        "read pagetypeinfo": lambda: (proc / "pagetypeinfo").read_text(),
        "parse pagetypeinfo": lambda: parse_pagetypeinfo(texts["pagetypeinfo"]),
        "read zoneinfo": lambda: (proc / "zoneinfo").read_text(),
        "parse zoneinfo": lambda: parse_zoneinfo(texts["zoneinfo"]),
    }
    print(f"{len(zones)} zones, {len(zones[0].free_blocks)} orders, {args.rounds} rounds")
    for name, step in steps.items():
        median, worst = measure(args.rounds, step)
        print(f"{name:<34} median {median:9.1f} us   worst {worst:9.1f} us")


if __name__ == "__main__":
    main()
