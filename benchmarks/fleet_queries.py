"""Query time of each fleet panel over 6 hours of a simulated fleet, with and without the fleet recording rules.

    python benchmarks/fleet_queries.py [--nodes 1000] [--hours 6] [--work /var/tmp/kmem-fleet] [--runs 3]

Writes the history (benchmarks/fleet_history.py; kept in --work and reused while its size matches), backfills it and
the recording rules into a real Prometheus (benchmarks/fleet_prometheus.py), and times every query of the fleet
dashboard: as rendered (reading the recorded series), and as rendered with fleetUseRecordingRules false (the same
aggregates computed from the raw series). Range queries span the whole history with Grafana's step for a panel
about 1,000 pixels wide (20 s for 6 hours); table and bar panels are instant queries at the end. Each figure is the
median of --runs runs. Then it runs the checks of benchmarks/fleet_checks.py on this fleet (panels and variables
return data, the tables and the firing alerts name exactly the manifest's bad nodes) and exits 1 if one fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import fleet_history
from fleet_checks import all_checks, fill
from fleet_prometheus import FleetPrometheus

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "mixin"))
import render  # noqa: E402

def fleet_targets(use_rules: bool) -> list[tuple[str, dict[str, Any]]]:
    board = render.evaluate({"fleetUseRecordingRules": use_rules})["dashboards"]["fleet.json"]
    return [(f"{panel['title']} [{target['refId']}]", target)
            for panel in board["panels"] for target in panel.get("targets", [])]


def timed(server: FleetPrometheus, target: dict[str, Any], manifest: dict[str, Any], step: int, runs: int) -> float:
    expr = fill(target["expr"], manifest)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        if target.get("instant"):
            server.query(expr, manifest["end"])
        else:
            server.query_range(expr, manifest["start"], manifest["end"], step)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def history(work: Path, nodes: int, hours: float, interval: int) -> Path:
    """The history in work/history, written again unless one of the same size is there."""
    out = work / "history"
    manifest = out / "manifest.json"
    if manifest.exists():
        known = json.loads(manifest.read_text())
        if (known["nodes"], known["end"] - known["start"], known["interval"]) == (nodes, int(hours * 3600), interval):
            print(f"reusing {out} ({known['samples']} samples)")
            return out
    began = time.monotonic()
    written = fleet_history.generate(out, nodes, hours, interval)
    print(f"wrote {nodes} nodes x {hours} h: {written['samples']} samples in {time.monotonic() - began:.0f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--interval", type=int, default=60)
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/kmem-fleet"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--step", type=int, default=20, help="range query step in seconds")
    args = parser.parse_args(argv)
    source = history(args.work, args.nodes, args.hours, args.interval)
    manifest = json.loads((source / "manifest.json").read_text())
    began = time.monotonic()
    with FleetPrometheus.backfilled(source, args.work / "prometheus") as server:
        print(f"backfilled the history and the recording rules in {time.monotonic() - began:.0f} s")
        recorded, raw = fleet_targets(True), fleet_targets(False)
        print(f"\nfleet panel queries over {args.hours} h of {args.nodes} nodes (median of {args.runs}; "
              f"range step {args.step} s; seconds)")
        print(f"{'panel [query]':<78} {'kind':<7} {'rules':>8} {'raw':>8}")
        slowest = 0.0
        for (title, with_rules), (_, without) in zip(recorded, raw):
            fast = timed(server, with_rules, manifest, args.step, args.runs)
            slow = timed(server, without, manifest, args.step, args.runs)
            slowest = max(slowest, fast)
            kind = "instant" if with_rules.get("instant") else "range"
            print(f"{title[:78]:<78} {kind:<7} {fast:8.3f} {slow:8.3f}")
        print(f"\nslowest fleet query with the recording rules: {slowest:.3f} s")
        print(f"\nchecks on the {args.nodes}-node fleet (benchmarks/fleet_checks.py):")
        failed = 0
        for name, check in all_checks(server, manifest):
            problems = check()
            failed += bool(problems)
            print(f"  {'ok  ' if not problems else 'FAIL'} {name}" + "".join(f"\n         {p}" for p in problems[:10]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
