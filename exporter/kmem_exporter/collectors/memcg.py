"""Memory cgroups in use, visible, dying and accounting kernel memory: the signals of memory cgroup ID exhaustion.

The kernel gives each memory cgroup one of 65535 IDs (65534 on 4.7 to 5.17, whose allocator never handed out the
last one, until "mm: memcontrol: fix cannot alloc the maximum memcg ID" in 5.18); creating one fails (ENOSPC, or
EBUSY on recent kernels) when none is left. A removed cgroup whose memory is still charged stays allocated
("dying"). Who holds an ID depends on the kernel:
- before 4.7 (RHEL 7's 3.10) a dying cgroup keeps its ID until it is freed: IDs in use = /proc/cgroups num_cgroups
  (visible + dying); on 3.10 with kmem accounting dying cgroups pile up until no container starts;
- since 4.7 (commit 73f576c04b94) the ID is released when the cgroup is removed, except while swapped-out pages
  still refer to it: IDs in use = the online memory cgroups (the walk's visible count, root included), a lower
  bound when dying cgroups hold swap. Dying cgroups then cost memory, not IDs. Distribution kernels that took the
  change back to 3.19-4.6 are counted the old way: more IDs than they hold, the safe direction.

Where the memory controller lives is decided from /proc/cgroups and the cgroup filesystem:
- /proc/cgroups gives the memory row a v1 hierarchy id (non-zero): cgroup v1 at `<cgroupfs>/memory`;
- otherwise cgroup v2: `<cgroupfs>` itself when its cgroup.controllers lists memory (unified hosts), else
  `<cgroupfs>/unified` when that one does (hybrid hosts that gave memory to v2).

Kernel-memory accounting ("mode"):
- `per-cgroup`: cgroup v1 on kernels before 4.6 (RHEL 7). Each cgroup is switched on on its own (by a kmem limit);
  reading its memory.kmem.slabinfo fails with EIO when off, so every cgroup is probed in the walk.
- `always`: 4.6+ and cgroup v2: every memory cgroup but the root accounts kernel memory.
- `disabled`: booted with cgroup.memory=nokmem. On 4.6+ and cgroup v2 the command line decides. On 3.10 only RHEL
  7.7 and later kernels honour the option (a backport: no cgroup can switch accounting on, every slabinfo read fails
  with EIO), earlier ones ignore it; so there the probe still runs, and the mode is `disabled` only when it finds no
  cgroup accounting kernel memory (`per-cgroup` otherwise: the option was ignored).

The tree walk runs in the background (collector.memcg.interval); a scrape serves the latest pass, with the IDs in
use as of the scrape where the kernel counts them in a file: /proc/cgroups before 4.7, the root's cgroup.stat on
cgroup v2 kernels that count memory cgroups there (nr_subsys_memory). Elsewhere (cgroup v1 from 4.7 on) the count is
the walk's: on a crowded node passes are spaced to keep to 0.2% of a core (up to 5 minutes apart), but from 80% of
the IDs in use (KmemMemcgIdsHigh's threshold) to 2%, so that the count the ID alerts see is at most about the
interval old when it matters.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Optional

from prometheus_client.core import GaugeMetricFamily, Metric

from kmem_exporter.collectors.background import BackgroundCollector
from kmem_exporter.collectors.errors import CollectorError
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.collectors.base import interval_option
from kmem_exporter.collectors.memcg_walk import V2_MEMORY_FILES, walk_memory_cgroups
from kmem_exporter.parsers.cgroups import Controller, parse_cgroup_stat, parse_controllers, parse_proc_cgroups
from kmem_exporter.parsers.kernel import kmem_disabled_at_boot, parse_release

MEMORY_CGROUP_ID_LIMIT = 65535  # MEM_CGROUP_ID_MAX: memory cgroup IDs are 16 bits, 0 unused
LAST_ID_HANDED_OUT_SINCE = (5, 18)  # from 4.7 the memcg IDR's exclusive end left ID 65535 unused until then
ALWAYS_ACCOUNTED_SINCE = (4, 6)  # kernel-memory accounting on for every cgroup v1 memory cgroup
IDS_RELEASED_AT_REMOVAL_SINCE = (4, 7)  # a removed (dying) memory cgroup no longer holds its ID
NEAR_THE_LIMIT = 0.8  # the share of the IDs in use from which the walk may take NEAR_THE_LIMIT_CPU_SHARE of a core
NEAR_THE_LIMIT_CPU_SHARE = 0.02  # a walk over 65,535 memory cgroups (0.6 s) every 30 s instead of every 5 minutes
V1_MEMORY_FILE = "memory.usage_in_bytes"  # in every cgroup v1 memory cgroup, root included; not on cgroup v2


@dataclass(frozen=True)
class Hierarchy:
    version: str  # "v1" or "v2"
    root: Path


@dataclass(frozen=True)
class MemcgPass:
    hierarchy: str
    mode: str
    in_use: int  # /proc/cgroups num_cgroups: visible + dying
    visible: int
    ids_in_use: int
    id_limit: int
    dying: Optional[int]  # None: cgroup v2 on a kernel without cgroup.stat (before 4.14)
    kmem_enabled: int
    dying_hold_ids: bool = False  # before 4.7: the IDs in use are /proc/cgroups' num_cgroups
    stat_file: Optional[Path] = None  # cgroup v2: the root's cgroup.stat, which newer kernels count memory cgroups in


def dying_during_walk(before: int, after: int, visible: int, previous: Optional[int]) -> int:
    """The dying memory cgroups on cgroup v1: /proc/cgroups' num_cgroups (read `before` and `after` the walk) less the
    `visible` ones the walk counted. Cgroups created during the walk are in `after` and some of them in `visible`,
    so the count lies between the two differences: the one nearest the `previous` pass's count (no change where
    the readings allow none; the lower one on a first pass)."""
    low, high = sorted((before - visible, after - visible))
    return max(0, low if previous is None else min(max(previous, low), high))


class MemcgCollector(BackgroundCollector[MemcgPass]):
    name = "memcg"
    description = "memory cgroups in use, visible, dying and with kmem accounting (background walk of the cgroup tree)"
    options = (interval_option("memcg", "30s", "walk over the memory cgroup tree"),)

    def refresh(self, files: KernelFiles) -> MemcgPass:
        proc_cgroups = self.config.procfs / "cgroups"
        controllers = files.parse_optional(proc_cgroups, parse_proc_cgroups)
        memory: Optional[Controller] = (controllers or {}).get("memory")
        if memory is not None and not memory.enabled:
            raise CollectorError(f"{proc_cgroups}: the memory controller is disabled (cgroup_disable=memory)")
        hierarchy = self.find_hierarchy(files, memory)
        release = files.parse_value(self.config.procfs / "sys" / "kernel" / "osrelease", parse_release)
        mode = self.accounting_mode(files, hierarchy, release)

        counts = walk_memory_cgroups(
            hierarchy.root,
            member_files=() if hierarchy.version == "v1" else V2_MEMORY_FILES,
            probe_kmem=mode == "per-cgroup",
        )
        if mode == "per-cgroup" and counts.kmem_enabled == 0 and self.booted_nokmem(files):
            mode = "disabled"  # a 3.10 kernel that honours nokmem (see the module docstring)
        if hierarchy.version == "v1":
            assert memory is not None
            after = (KernelFiles(files.max_bytes).parse_optional(proc_cgroups, parse_proc_cgroups) or {}).get("memory")
            previous = self._result.dying if self._result is not None else None
            dying: Optional[int] = dying_during_walk(memory.num_cgroups, memory.num_cgroups if after is None
                                                     else after.num_cgroups, counts.visible, previous)
        else:
            stat = files.parse_optional_value(hierarchy.root / "cgroup.stat", parse_cgroup_stat)
            dying = None if stat is None else stat.dying("memory")
        if memory is not None:
            in_use = memory.num_cgroups
        else:  # kernels built without cgroup v1 memory support leave memory out of /proc/cgroups
            in_use = counts.visible + (dying or 0)
        dying_hold_ids = release < IDS_RELEASED_AT_REMOVAL_SINCE and memory is not None
        ids_in_use = in_use if release < IDS_RELEASED_AT_REMOVAL_SINCE else counts.visible
        kmem_enabled = {"per-cgroup": counts.kmem_enabled, "always": counts.visible - 1, "disabled": 0}[mode]
        stat_file = hierarchy.root / "cgroup.stat" if hierarchy.version == "v2" else None
        return MemcgPass(hierarchy.version, mode, in_use, counts.visible, ids_in_use, id_limit(release), dying,
                         kmem_enabled, dying_hold_ids, stat_file)

    def current(self, result: MemcgPass, files: KernelFiles) -> MemcgPass:
        """The IDs in use as of this scrape where the kernel counts them in a file (the walk behind them can be
        minutes old on a large tree): before 4.7 /proc/cgroups' num_cgroups; on cgroup v2 kernels whose root
        cgroup.stat counts the live memory cgroups, nr_subsys_memory (root included)."""
        if result.dying_hold_ids:
            controllers = files.parse_optional(self.config.procfs / "cgroups", parse_proc_cgroups)
            memory = (controllers or {}).get("memory")
            return result if memory is None else replace(result, ids_in_use=memory.num_cgroups)
        if result.stat_file is None or result.ids_in_use != result.visible:
            return result
        stat = files.parse_optional_value(result.stat_file, parse_cgroup_stat)
        live = None if stat is None else stat.subsys.get("memory")
        return result if live is None else replace(result, ids_in_use=live)

    def cpu_share(self, result: Optional[MemcgPass]) -> float:
        """More of a core once the IDs run short: the alerts then need a fresh count."""
        if result is not None and result.ids_in_use >= NEAR_THE_LIMIT * result.id_limit:
            return NEAR_THE_LIMIT_CPU_SHARE
        return super().cpu_share(result)

    def find_hierarchy(self, files: KernelFiles, memory: Optional[Controller]) -> Hierarchy:
        cgroupfs = self.config.cgroupfs
        if memory is not None and memory.hierarchy != 0:
            root = cgroupfs / "memory"
            if not (root / V1_MEMORY_FILE).is_file():
                raise CollectorError(
                    f"{root}: not a cgroup v1 memory hierarchy ({self.config.procfs / 'cgroups'} puts memory on v1 "
                    f"hierarchy {memory.hierarchy}; point --path.cgroupfs at the directory that holds its mount)")
            return Hierarchy("v1", root)
        for root in (cgroupfs, cgroupfs / "unified"):
            available = files.parse_optional_value(root / "cgroup.controllers", parse_controllers)
            if available is not None and "memory" in available:
                return Hierarchy("v2", root)
        raise CollectorError(f"{cgroupfs}: no memory cgroup hierarchy found (neither memory/ on cgroup v1 nor a "
                             "cgroup v2 root here or at unified/ whose cgroup.controllers lists memory)")

    def accounting_mode(self, files: KernelFiles, hierarchy: Hierarchy, release: tuple[int, int]) -> str:
        if hierarchy.version == "v1" and release < ALWAYS_ACCOUNTED_SINCE:
            return "per-cgroup"
        return "disabled" if self.booted_nokmem(files) else "always"

    def booted_nokmem(self, files: KernelFiles) -> bool:
        return files.parse_value(self.config.procfs / "cmdline", kmem_disabled_at_boot)

    def metrics(self, result: MemcgPass) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "kmem_memcg_cgroups",
            "Memory cgroups the kernel holds (/proc/cgroups num_cgroups), including removed ones not yet freed. "
            "On cgroup v2 it counts every cgroup of the unified hierarchy.",
            value=result.in_use)
        yield GaugeMetricFamily(
            "kmem_memcg_ids_in_use",
            "Memory cgroup IDs taken, to compare with kmem_memcg_id_limit. Kernels before 4.7: every memory cgroup "
            "the kernel holds, removed (dying) ones included (kmem_memcg_cgroups). 4.7 and later release a removed "
            "cgroup's ID, so only the online memory cgroups count (visible, root included); a dying cgroup whose "
            "swapped-out pages are still referenced keeps its ID, so with swap in use and dying cgroups present "
            "this is a lower bound. On cgroup v2 kernels whose root cgroup.stat has nr_subsys_memory, that count "
            "as of the scrape; otherwise as of the latest background walk.",
            value=result.ids_in_use)
        yield GaugeMetricFamily(
            "kmem_memcg_id_limit",
            "The most memory cgroup IDs the running kernel hands out: 65535, or 65534 on 4.7 to 5.17; creating a "
            "memory cgroup fails beyond it.",
            value=result.id_limit)
        yield GaugeMetricFamily(
            "kmem_memcg_visible_cgroups",
            "Memory cgroups visible as directories in the cgroup filesystem, root included (the online ones). "
            "On cgroup v2 a directory is one when its parent enables the memory controller, or io (which brings "
            "a memory cgroup with hidden files).",
            value=result.visible)
        if result.dying is not None:
            yield GaugeMetricFamily(
                "kmem_memcg_dying_cgroups",
                "Memory cgroups removed but not yet freed, e.g. because memory charged to them (page cache, kernel "
                "memory) is still in use. They cost memory on every kernel, and hold an ID before 4.7.",
                value=result.dying)
        yield GaugeMetricFamily(
            "kmem_memcg_kmem_enabled_cgroups",
            "Visible memory cgroups that account kernel memory (slab) and can be pinned as dying by it.",
            value=result.kmem_enabled)
        mode = GaugeMetricFamily(
            "kmem_memcg_kmem_accounting_info",
            "How memory cgroups account kernel memory: per-cgroup (cgroup v1 before 4.6: switched on cgroup by "
            "cgroup), always (4.6+ and cgroup v2), disabled (booted with cgroup.memory=nokmem; on 3.10 only when "
            "no cgroup accounts kernel memory, as kernels before RHEL 7.7 ignore the option). The value is always 1.",
            labels=["mode"])
        mode.add_metric([result.mode], 1)
        yield mode
        hierarchy = GaugeMetricFamily(
            "kmem_memcg_hierarchy_info",
            "The cgroup hierarchy the memory controller is on: v1 (legacy or hybrid hosts) or v2 (unified). "
            "The value is always 1.",
            labels=["hierarchy"])
        hierarchy.add_metric([result.hierarchy], 1)
        yield hierarchy


def id_limit(release: tuple[int, int]) -> int:
    """The memory cgroup IDs a kernel of this release hands out: before 4.7 they are CSS IDs (1 to 65535); from 4.7
    the memory controller's own allocator stopped one short of MEM_CGROUP_ID_MAX until 5.18 (measured in the kernel
    lab: mkdir failed at 65,534 memory cgroups on 5.10, at 65,535 on 6.1)."""
    if IDS_RELEASED_AT_REMOVAL_SINCE <= release < LAST_ID_HANDED_OUT_SINCE:
        return MEMORY_CGROUP_ID_LIMIT - 1
    return MEMORY_CGROUP_ID_LIMIT
