"""Write the history of a simulated fleet of kmem-exporter nodes as OpenMetrics text, with a manifest of its bad nodes.

    python benchmarks/fleet_history.py OUT [--nodes 1000] [--hours 6] [--interval 60] [--seed 1]

Every node starts from a real scrape of a fixture tree (tests/fixtures: live-6.18 for modern nodes, rhel7-healthy
for RHEL 7 / 3.10 nodes), so metric names, label sets and values are the exporter's own; only the series the
mixin's rules and dashboards read are kept. Values then move over time: sizes swing slowly around the fixture's
value, counters grow, and each bad node follows its fault:

- fragmenting: zones DMA32 and Normal lose their high-order blocks until order 3 is the largest (the
  rhel7-fragmented fixture's Normal zone): an order-4 allocation fails;
- memcg-leak: a 3.10 node whose dying memory cgroups grow by 3,000 an hour toward the 65,535 IDs;
- conntrack-leak: a 3.10 node whose nf_conntrack caches pile up far beyond its network namespaces;
- allocation-failures: the kernel logs order-4 page allocation failures, the last one minutes before the end;
- past-allocation-failures: the same, but the last one over an hour before the end (nothing fires at the end);
- exporter-down: the exporter stops answering 40 minutes before the end (`up` 0, no other series);
- collector-failing: the slabinfo collector fails for the last hour (its series vanish).

OUT/history.om holds the samples (one metric family after the other) and OUT/manifest.json the time range, the
nodes of each kind, and the alerts that must be firing at the end (alert name, instance and identifying labels).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

PROJECT = Path(__file__).resolve().parents[1]
FIXTURES = PROJECT / "tests" / "fixtures"
JOB = "kmem-exporter"
TEMPLATES = {"modern": "live-6.18", "el7": "rhel7-healthy"}
# Share of the fleet per bad kind (at least one node each), and whether the kind runs a 3.10 kernel.
BAD_KINDS = {
    "fragmenting": (0.02, "modern"),
    "memcg-leak": (0.01, "el7"),
    "conntrack-leak": (0.01, "el7"),
    "allocation-failures": (0.01, "modern"),
    "past-allocation-failures": (0.01, "modern"),
    "exporter-down": (0.005, "modern"),
    "collector-failing": (0.005, "modern"),
}
DOWN_BEFORE_END = 40 * 60
COLLECTOR_FAILING_BEFORE_END = 60 * 60
# Kernel-log events the rules and dashboards read.
EVENTS = re.compile(r'event="(page_allocation_failure|page_allocation_stall|slub_allocation_failure|'
                    r'slab_cache_create_failure|nf_conntrack_cache_failure|nf_conntrack_table_full)"')
SLAB_CACHES_KEPT = 15
# The largest free order a fragmenting node's zones end at.
FRAGMENTED_FLOOR = {"DMA32": 3, "Normal": 3}
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


@dataclass(frozen=True)
class Series:
    name: str
    labels: str  # the template's labels, without braces ("" when none)
    value: float

    def label(self, key: str) -> str | None:
        match = re.search(rf'(?:^|,){key}="([^"]*)"', self.labels)
        return match.group(1) if match else None


@dataclass
class Node:
    instance: str
    kind: str  # "healthy" or one of BAD_KINDS
    kernel: str  # "modern" or "el7"
    rng: random.Random
    events: list[int] = field(default_factory=list)  # seconds from the start of logged allocation failures


def mixin_metric_names() -> set[str]:
    """The raw metric names the rendered rules and dashboards read."""
    sys.path.insert(0, str(PROJECT / "mixin"))
    import render

    text = json.dumps(render.evaluate())
    return set(re.findall(r"(?<![\w:])kmem_[a-z0-9_]+", text))


def scrape_template(tree: str) -> list[Series]:
    """The exposition of a real scrape of a fixture tree, as series."""
    root = FIXTURES / tree
    result = subprocess.run([sys.executable, "-m", "kmem_exporter", "scrape", f"--path.procfs={root / 'proc'}",
                             f"--path.sysfs={root / 'sys'}", f"--path.kmsg={root / 'dev' / 'kmsg'}"],
                            capture_output=True, text=True, timeout=120, check=True, cwd=PROJECT)
    series = []
    for line in result.stdout.splitlines():
        match = SAMPLE.match(line)
        if match:
            series.append(Series(match.group(1), (match.group(2) or "{}")[1:-1], float(match.group(3))))
    return series


def keep(series: list[Series], names: set[str]) -> list[Series]:
    """The series the mixin reads: its metric names, the events it watches, the largest slab caches."""
    slab_sizes = {s.label("cache"): s.value for s in series if s.name == "kmem_slab_bytes"}
    largest = set(sorted(slab_sizes, key=lambda cache: -slab_sizes[cache])[:SLAB_CACHES_KEPT]) | {"nf_conntrack"}
    kept = []
    for s in series:
        allocstall = re.fullmatch(r"kmem_vmstat_allocstall(_[a-z0-9]+)?_total", s.name)
        if s.name not in names and not allocstall:
            continue
        if s.name == "kmem_kernel_log_events_total" and not EVENTS.search(s.labels):
            continue
        if s.name in ("kmem_slab_bytes", "kmem_slab_caches") and s.label("cache") not in largest:
            continue
        kept.append(s)
    return kept + [Series("up", "", 1.0)]


# --- how values move ---------------------------------------------------------------------------------------------

ValueAt = Callable[[int], "float | None"]  # seconds from the start -> value (None: no sample)


def swing(base: float, rng: random.Random, amplitude: float = 0.05) -> ValueAt:
    """A value that swings slowly (period 2-5 hours) around base."""
    period = rng.uniform(7200, 18000)
    phase = rng.uniform(0, 2 * math.pi)
    scale = rng.uniform(0.7, 1.3)
    return lambda t: round(base * scale * (1 + amplitude * math.sin(2 * math.pi * t / period + phase)))


def counter(base: float, per_second: float) -> ValueAt:
    return lambda t: float(int(base + per_second * t))


def constant(value: float) -> ValueAt:
    return lambda t: value


class Model:
    """The value of each series of one node over time."""

    def __init__(self, node: Node, duration: int, template: list[Series]) -> None:
        self.node = node
        self.duration = duration
        rng = node.rng
        self.netns = float(rng.randint(8, 40))
        self.cgroups = float(rng.randint(150, 900))
        self.template = {(s.name, s.labels): s.value for s in template}

    def largest_free_order(self, zone: str) -> ValueAt:
        """A fragmenting zone: from 10 down to its floor over the first 60% of the history."""
        floor = FRAGMENTED_FLOOR[zone]
        return lambda t: float(10 - round((10 - floor) * min(1.0, t / (0.6 * self.duration))))

    def value_at(self, s: Series) -> ValueAt:  # noqa: C901 - one branch per metric family is the point
        node, rng, name = self.node, self.node.rng, s.name
        zone = s.label("zone") or ""
        fragmenting = node.kind == "fragmenting" and zone in FRAGMENTED_FLOOR and s.label("node") == "0"
        if name == "kmem_buddy_largest_free_order":
            return self.largest_free_order(zone) if fragmenting else constant(s.value)
        if name in ("kmem_extfrag_index", "kmem_unusable_index", "kmem_buddy_free_blocks") and fragmenting:
            order = int(s.label("order") or 0)
            largest = self.largest_free_order(zone)
            if name == "kmem_extfrag_index":
                return lambda t: -1.0 if order <= (largest(t) or 0) else min(0.98, 0.9 + 0.01 * order)
            if name == "kmem_unusable_index":
                return lambda t: round(s.value, 3) if order <= (largest(t) or 0) else 0.97
            free = swing(max(s.value, 50), rng, 0.2)
            return lambda t: free(t) if order <= (largest(t) or 0) else 0.0
        if name in ("kmem_buddy_free_blocks", "kmem_zone_free_bytes", "kmem_nf_conntrack_entries",
                    "kmem_nf_conntrack_slab_objects", "kmem_nf_conntrack_slab_objects_active"):
            return swing(s.value, rng, 0.15)
        if name == "kmem_slab_bytes":
            if node.kind == "conntrack-leak" and s.label("cache") == "nf_conntrack":
                per_cache = s.value / max(self.template.get(("kmem_slab_caches", s.labels), 1.0), 1.0)
                return lambda t: per_cache * self.conntrack_caches(t)
            return swing(s.value, rng, 0.1)
        if name == "kmem_network_namespaces":
            return constant(self.netns)
        if name == "kmem_nf_conntrack_slab_caches" or (name == "kmem_slab_caches"
                                                        and s.label("cache") == "nf_conntrack"):
            if node.kernel == "modern":
                return constant(s.value)
            return self.conntrack_caches
        if name.startswith("kmem_memcg_") and name != "kmem_memcg_id_limit":
            return self.memcg(name, s.value)
        if name == "kmem_background_pass_timestamp_seconds":
            offset = rng.uniform(1, 50)
            return lambda t: t - offset  # made absolute by the writer
        if name == "kmem_kernel_log_events_total":
            if s.labels == 'event="page_allocation_failure",order="4"' and node.events:
                return lambda t: float(sum(1 for e in node.events if e <= t))
            return constant(s.value)
        if name.startswith("kmem_vmstat_compact_"):
            rate = {"stall": 0.01, "fail": 0.002, "success": 0.008}.get(name.split("_")[3], 0.0)
            return counter(s.value, rate * rng.uniform(0.5, 1.5))
        if name.startswith("kmem_vmstat_allocstall"):
            return counter(s.value, 0.005 * rng.uniform(0.5, 1.5))
        return constant(s.value)

    def conntrack_caches(self, t: int) -> float:
        if self.node.kind == "conntrack-leak":
            return self.netns + round(60 * t / self.duration)
        return self.netns

    def memcg(self, name: str, base: float) -> ValueAt:
        """Memory cgroups: flat around a few hundred, or (memcg-leak) dying ones growing by 3,000 an hour."""
        leak = self.node.kind == "memcg-leak"
        visible = self.cgroups * 0.4
        dying = (lambda t: 20000.0 + 3000 * t / 3600) if leak else constant(round(self.cgroups * 0.6))
        if name == "kmem_memcg_visible_cgroups":
            return constant(round(visible))
        if name == "kmem_memcg_dying_cgroups":
            return dying
        def held(t: int) -> float:
            return round(visible) + (dying(t) or 0.0)

        if name == "kmem_memcg_cgroups":
            return held
        if name == "kmem_memcg_ids_in_use":  # 3.10 keeps a dying cgroup's ID; modern kernels give it back
            return held if self.node.kernel == "el7" else constant(round(visible))
        if name == "kmem_memcg_kmem_enabled_cgroups":
            return constant(round(visible) - 1)
        return constant(base)


# --- the fleet -----------------------------------------------------------------------------------------------------


def plan(nodes: int, seed: int, duration: int) -> list[Node]:
    """The nodes, bad ones spread through the fleet; allocation-failure events placed in time."""
    rng = random.Random(seed)
    kinds: list[tuple[str, str]] = []
    for kind, (share, kernel) in BAD_KINDS.items():
        kinds += [(kind, kernel)] * max(1, round(share * nodes))
    if len(kinds) >= nodes:
        raise SystemExit(f"--nodes {nodes} is too few for one node of each of the {len(BAD_KINDS)} bad kinds")
    kinds += [("healthy", "modern")] * (nodes - len(kinds))
    rng.shuffle(kinds)
    fleet = []
    for number, (kind, kernel) in enumerate(kinds, start=1):
        node = Node(f"node-{number:04d}", kind, kernel, random.Random(rng.random()))
        if kind == "allocation-failures":
            node.events = sorted([rng.randrange(0, duration - 3600) for _ in range(3)]
                                 + [duration - rng.randrange(120, 600)])
        elif kind == "past-allocation-failures":
            node.events = sorted(rng.randrange(0, duration - 3900) for _ in range(3))
        fleet.append(node)
    return fleet


def expected_alerts(node: Node) -> list[dict[str, str]]:
    """The alerts that must be firing for node at the end: alert name and identifying labels."""
    el7 = [{"alertname": "KmemKmemAccountingOnBuggyKernel"}] if node.kernel == "el7" else []
    alerts = {
        "healthy": [],
        "past-allocation-failures": [],
        "fragmenting": [{"alertname": alert, "node": "0", "zone": zone, "order": "6"} for zone in FRAGMENTED_FLOOR
                        for alert in ("KmemHighOrderFragmentation", "KmemHighOrderBlocksRunningOut")],
        "memcg-leak": [{"alertname": "KmemMemcgIdsExhaustionPredicted"}, {"alertname": "KmemMemcgDyingGrowing"}],
        "conntrack-leak": [{"alertname": "KmemConntrackSlabCacheLeak"}],
        "allocation-failures": [{"alertname": "KmemPageAllocationFailure", "event": "page_allocation_failure",
                                 "order": "4"}],
        "exporter-down": [{"alertname": "KmemExporterDown"}],
        "collector-failing": [{"alertname": "KmemExporterCollectorFailing", "collector": "slabinfo"}],
    }[node.kind] + el7
    return [{**alert, "instance": node.instance} for alert in alerts]


def present(node: Node, s: Series, t: int, duration: int) -> bool:
    """Whether the series has a sample at t (down exporters and failing collectors lose theirs)."""
    if node.kind == "exporter-down" and t > duration - DOWN_BEFORE_END:
        return s.name == "up"
    if node.kind == "collector-failing" and t > duration - COLLECTOR_FAILING_BEFORE_END:
        return not s.name.startswith(("kmem_slab_", "kmem_nf_conntrack_slab_"))
    return True


def write_history(out: TextIO, fleet: list[Node], templates: dict[str, list[Series]], start: int, duration: int,
                  interval: int) -> int:
    """Write every sample, one metric family after the other; return the number of samples."""
    times = list(range(0, duration + 1, interval))
    stamps = [str(start + t) for t in times]
    models = {node.instance: Model(node, duration, templates[node.kernel]) for node in fleet}
    names = sorted({s.name for series in templates.values() for s in series})
    samples = 0
    for name in names:
        for node in fleet:
            model = models[node.instance]
            for s in templates[node.kernel]:
                if s.name != name:
                    continue
                value_at = model.value_at(s)
                labels = f'instance="{node.instance}",job="{JOB}"' + ("," + s.labels if s.labels else "")
                prefix = f"{name}{{{labels}}} "
                absolute = name == "kmem_background_pass_timestamp_seconds"
                lines = []
                for t, stamp in zip(times, stamps):
                    if not present(node, s, t, duration):
                        continue
                    value = value_at(t)
                    if name == "up" and node.kind == "exporter-down" and t > duration - DOWN_BEFORE_END:
                        value = 0.0
                    elif name == "kmem_collector_success" and s.label("collector") == "slabinfo" \
                            and node.kind == "collector-failing" and t > duration - COLLECTOR_FAILING_BEFORE_END:
                        value = 0.0
                    if value is None:
                        continue
                    if absolute:
                        value += start
                    lines.append(f"{prefix}{value:.12g} {stamp}\n")
                out.writelines(lines)
                samples += len(lines)
    out.write("# EOF\n")
    return samples


def generate(out_dir: Path, nodes: int, hours: float, interval: int, seed: int = 1,
             end: int | None = None) -> dict[str, object]:
    """Write out_dir/history.om and out_dir/manifest.json; return the manifest."""
    duration = int(hours * 3600) // interval * interval
    end = end if end is not None else int(time.time()) // interval * interval
    start = end - duration
    names = mixin_metric_names()
    templates = {kernel: keep(scrape_template(tree), names) for kernel, tree in TEMPLATES.items()}
    fleet = plan(nodes, seed, duration)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "history.om", "w", encoding="utf-8", buffering=1 << 20) as out:
        samples = write_history(out, fleet, templates, start, duration, interval)
    manifest: dict[str, object] = {
        "start": start, "end": end, "interval": interval, "nodes": nodes, "job": JOB, "samples": samples,
        "series_per_node": {kernel: len(series) for kernel, series in templates.items()},
        "kinds": {kind: [n.instance for n in fleet if n.kind == kind] for kind in ["healthy", *BAD_KINDS]},
        "alerts": [alert for node in fleet for alert in expected_alerts(node)],
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("out", type=Path, help="directory for history.om and manifest.json")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--interval", type=int, default=60, help="seconds between samples (the scrape interval)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.hours <= 0 or args.interval < 1:
        parser.error("--nodes, --hours and --interval must be positive")
    began = time.monotonic()
    manifest = generate(args.out, args.nodes, args.hours, args.interval, args.seed)
    alerts = manifest["alerts"]
    assert isinstance(alerts, list)
    print(f"{args.nodes} nodes x {args.hours} h every {args.interval} s: {manifest['samples']} samples, "
          f"{len(alerts)} alerts expected at the end ({time.monotonic() - began:.0f} s) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
