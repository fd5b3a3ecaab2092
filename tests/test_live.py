"""The exporter on this machine's real /proc and /sys: every collector succeeds as root, and values agree with
what the kernel says elsewhere."""

from __future__ import annotations

import os
from dataclasses import dataclass
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


@dataclass
class Kernel:
    """What the kernel says itself at one moment."""

    vmstat: dict[str, int]
    zoneinfo_free: dict[tuple[str, str], int]
    mem_free: int

    @classmethod
    def now(cls) -> "Kernel":
        return cls(vmstat(), zoneinfo_free_pages(), meminfo_bytes("MemFree"))


@dataclass
class Live:
    """One scrape of this host with every collector enabled, and the kernel's own counters read just before and
    after it: other work on this machine allocates and frees memory meanwhile, so a value read during the scrape is
    compared with what the kernel said on either side of it."""

    text: str
    stderr: str
    before: Kernel
    after: Kernel


def between(value: float, first: float, second: float, slack: float) -> bool:
    return min(first, second) - slack <= value <= max(first, second) + slack


@pytest.fixture(scope="module")
def live() -> Live:
    before = Kernel.now()
    result = run_exporter("scrape", *all_collectors())
    return Live(result.stdout, result.stderr, before, Kernel.now())


def test_every_collector_succeeds(live: Live) -> None:
    assert collector_success(live.text) == {name: 1 for name in COLLECTORS}, live.stderr


def test_promtool_is_silent(live: Live) -> None:
    assert promtool_check_metrics(live.text) == ""


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


def test_buddyinfo_free_pages_match_the_kernels_counters(live: Live) -> None:
    text, before, after = live.text, live.before, live.after
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
    free = before.vmstat["nr_free_pages"], after.vmstat["nr_free_pages"]
    assert between(total, *free, max(0.05 * max(free), 16384)), (total, free)
    for zone, pages in by_zone.items():
        zone_free = before.zoneinfo_free[zone], after.zoneinfo_free[zone]
        assert between(pages, *zone_free, max(0.05 * max(zone_free), 16384)), (zone, pages, zone_free)
    assert total * page <= max(before.mem_free, after.mem_free) * 1.05


def test_kernel_release_is_uname(live: Live) -> None:
    assert value(live.text, "kmem_kernel_info", release=os.uname().release) == 1


def test_nokmem_matches_cmdline(live: Live) -> None:
    words = Path("/proc/cmdline").read_text().split()
    booted_nokmem = any(w.startswith("cgroup.memory=") and "nokmem" in w.split("=", 1)[1].split(",") for w in words)
    assert value(live.text, "kmem_kernel_boot_nokmem") == (1 if booted_nokmem else 0)


def test_sysctls_match_proc_sys_vm(live: Live) -> None:
    exposed = {dict(labels)["sysctl"]: v for (name, labels), v in series_values(live.text).items()
               if name == "kmem_vm_sysctl"}
    assert set(exposed) == {"compaction_proactiveness", "extfrag_threshold", "min_free_kbytes", "vfs_cache_pressure",
                            "watermark_boost_factor", "watermark_scale_factor", "zone_reclaim_mode"}
    for sysctl, exported in exposed.items():
        assert exported == int(Path(f"/proc/sys/vm/{sysctl}").read_text())


def test_vmstat_counters_lie_between_reads_before_and_after(live: Live) -> None:
    text, before, after = live.text, live.before.vmstat, live.after.vmstat
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
