"""The benchmarks' worst-case host root generator writes a tree every collector reads: a scrape of a small one
succeeds with the counts asked for, and its exposition is clean."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from conftest import PROJECT, promtool_check_metrics, scrape_ok
from metrics_text import all_collectors, collector_success, series_values, value
from kmem_exporter.collectors import COLLECTORS
from kmem_exporter.parsers.buddyinfo import parse_buddyinfo


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("worst_case_root", PROJECT / "benchmarks" / "worst_case_root.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_worst_case_root_scrapes_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "root"
    load_generator().generate(root, conntrack=120, cgroups=300, nodes=4)
    flags = [f"--path.procfs={root / 'proc'}", f"--path.sysfs={root / 'sys'}", f"--path.kmsg={root / 'dev' / 'kmsg'}"]
    exposition = scrape_ok(*flags, *all_collectors())

    assert collector_success(exposition) == dict.fromkeys(COLLECTORS, 1.0)
    assert value(exposition, "kmem_nf_conntrack_slab_caches") == 120
    assert value(exposition, "kmem_memcg_visible_cgroups") == 300
    assert value(exposition, "kmem_memcg_cgroups") == 300
    nodes = {dict(labels)["node"] for (name, labels) in series_values(exposition) if name == "kmem_buddy_free_blocks"}
    assert nodes == {"0", "1", "2", "3"}
    real = parse_buddyinfo((PROJECT / "tests/fixtures/rhel7-fragmented/proc/buddyinfo").read_text())
    normal = next(b for b in real if b.zone == "Normal")
    assert value(exposition, "kmem_buddy_free_blocks", node="0", zone="Normal", order="1") == normal.free_blocks[1]
    free_pages = sum(c << o for b in parse_buddyinfo((root / "proc/buddyinfo").read_text())
                     for o, c in enumerate(b.free_blocks))
    zone_free = sum(v for (name, _), v in series_values(exposition).items() if name == "kmem_zone_free_bytes")
    assert zone_free == free_pages * value(exposition, "kmem_page_size_bytes")
    assert f"nr_free_pages {free_pages}" in (root / "proc/vmstat").read_text().splitlines()
    assert promtool_check_metrics(exposition) == ""

    unfolded = scrape_ok(*flags, "--no-collector.slabinfo.fold-caches")
    caches = {dict(labels)["cache"] for (name, labels) in series_values(unfolded) if name == "kmem_slab_caches"}
    assert sum(1 for cache in caches if cache.startswith("nf_conntrack_ffff")) == 120
    assert len(caches) - 120 > 250
