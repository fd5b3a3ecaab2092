"""The exporter on this machine's real /proc and /sys: every collector succeeds as root, and values agree with
what the kernel says elsewhere."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from conftest import RunningExporter, is_root, promtool_check_metrics, run_exporter
from metrics_text import all_collectors, collector_success, series_values, value
from kmem_exporter.collectors import COLLECTORS

pytestmark = pytest.mark.live


@pytest.fixture(autouse=True)
def need_root() -> None:
    assert is_root(), "the live tests read root-only kernel files: run them as root"


def vmstat() -> dict[str, int]:
    return {name: int(v) for name, v in (line.split() for line in Path("/proc/vmstat").read_text().splitlines())}


def meminfo_bytes(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, rest = line.split(":", 1)
        if name == field:
            number, unit = rest.split()
            assert unit == "kB"
            return int(number) * 1024
    raise KeyError(field)


@pytest.fixture(scope="module")
def live() -> tuple[str, dict[str, int], dict[str, int], str]:
    """One scrape of this host with every collector enabled, with /proc/vmstat read just before and after."""
    before = vmstat()
    result = run_exporter("scrape", *all_collectors())
    after = vmstat()
    return result.stdout, before, after, result.stderr


def test_every_collector_succeeds(live: tuple[str, dict[str, int], dict[str, int], str]) -> None:
    text, _, _, stderr = live
    assert collector_success(text) == {name: 1 for name in COLLECTORS}, stderr


def test_promtool_is_silent(live: tuple[str, dict[str, int], dict[str, int], str]) -> None:
    assert promtool_check_metrics(live[0]) == ""


def zoneinfo_free_pages() -> dict[tuple[str, str], int]:
    """`pages free` of each zone in /proc/zoneinfo, by (node, zone)."""
    free: dict[tuple[str, str], int] = {}
    zone: tuple[str, str] | None = None
    for line in Path("/proc/zoneinfo").read_text().splitlines():
        words = line.replace(",", " ").split()
        if words[:1] == ["Node"] and words[2] == "zone":
            zone = (words[1], words[3])
        elif words[:2] == ["pages", "free"] and zone is not None:
            free[zone] = int(words[2])
    return free


def test_buddyinfo_free_pages_match_the_kernels_counters(
        live: tuple[str, dict[str, int], dict[str, int], str]) -> None:
    text, before, after, _ = live
    page = value(text, "kmem_page_size_bytes")
    assert page == os.sysconf("SC_PAGE_SIZE")
    by_zone: dict[tuple[str, str], float] = {}
    for (name, labels), blocks in series_values(text).items():
        if name == "kmem_buddy_free_blocks":
            label = dict(labels)
            key = (label["node"], label["zone"])
            by_zone[key] = by_zone.get(key, 0) + blocks * 2 ** int(label["order"])
    total = sum(by_zone.values())
    # Both count pages on the buddy allocator's free lists; they differ only by what was allocated or freed between
    # the reads. (MemFree in /proc/meminfo is the same counter on a stock kernel; this host's kernel initialises
    # memory lazily and counts the uninitialised part in MemFree too, so MemFree is not comparable here.)
    kernel = (before["nr_free_pages"] + after["nr_free_pages"]) / 2
    assert abs(total - kernel) <= max(0.05 * kernel, 16384), (total, before["nr_free_pages"], after["nr_free_pages"])
    zoneinfo = zoneinfo_free_pages()
    for zone, pages in by_zone.items():
        assert abs(pages - zoneinfo[zone]) <= max(0.05 * zoneinfo[zone], 16384), (zone, pages, zoneinfo[zone])
    assert total * page <= meminfo_bytes("MemFree") * 1.05


def test_kernel_release_is_uname(live: tuple[str, dict[str, int], dict[str, int], str]) -> None:
    assert value(live[0], "kmem_kernel_info", release=os.uname().release) == 1


def test_nokmem_matches_cmdline(live: tuple[str, dict[str, int], dict[str, int], str]) -> None:
    words = Path("/proc/cmdline").read_text().split()
    booted_nokmem = any(w.startswith("cgroup.memory=") and "nokmem" in w.split("=", 1)[1].split(",") for w in words)
    assert value(live[0], "kmem_kernel_boot_nokmem") == (1 if booted_nokmem else 0)


def test_sysctls_match_proc_sys_vm(live: tuple[str, dict[str, int], dict[str, int], str]) -> None:
    exposed = {dict(labels)["sysctl"]: v for (name, labels), v in series_values(live[0]).items()
               if name == "kmem_vm_sysctl"}
    assert set(exposed) == {"compaction_proactiveness", "extfrag_threshold", "min_free_kbytes", "vfs_cache_pressure",
                            "watermark_boost_factor", "watermark_scale_factor", "zone_reclaim_mode"}
    for sysctl, exported in exposed.items():
        assert exported == int(Path(f"/proc/sys/vm/{sysctl}").read_text())


def test_vmstat_counters_lie_between_reads_before_and_after(
        live: tuple[str, dict[str, int], dict[str, int], str]) -> None:
    text, before, after, _ = live
    counters = {name[len("kmem_vmstat_"):-len("_total")]: v for (name, _), v in series_values(text).items()
                if name.startswith("kmem_vmstat_") and name.endswith("_total")}
    assert {"compact_stall", "compact_fail", "compact_success", "allocstall_normal", "oom_kill"} <= set(counters)
    for field, exported in counters.items():
        assert before[field] <= exported <= after[field], field


def test_serve_on_this_host(exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory()  # defaults: /proc, /sys, the default collectors
    text = exporter.metrics()
    enabled = {name for name, cls in COLLECTORS.items() if cls.default_enabled}
    assert collector_success(text) == {name: 1 for name in enabled}, exporter.log()
    assert promtool_check_metrics(text) == ""
    assert value(text, "kmem_kernel_info", release=os.uname().release) == 1
