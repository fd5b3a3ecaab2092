"""Reclaim, compaction and OOM event counters from /proc/vmstat."""

from __future__ import annotations

import functools
import re
from typing import Iterable

from prometheus_client.core import Metric

from kmem_exporter.collectors.base import Collector
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.families import RowFamily
from kmem_exporter.settings import Setting, parse_regex
from kmem_exporter.parsers.vmstat import is_gauge, parse_vmstat

DEFAULT_FIELDS = (
    r"compact_.*|allocstall.*|kswapd_.*|pgscan_.*|pgsteal_.*|drop_pagecache|drop_slab|oom_kill|thp_.*_fallback"
)

# What the fields that tell fragmentation and reclaim stories mean; other fields get a generic text.
_HELP = {
    "compact_stall": ("Times an allocating task stalled to compact memory itself because no free block was large "
                      "enough."),
    "compact_fail": "Direct compactions that did not free a block large enough for the allocation.",
    "compact_success": "Direct compactions that freed a block large enough for the allocation.",
    "compact_migrate_scanned": "Pages compaction scanned for pages to move.",
    "compact_free_scanned": "Pages compaction scanned for free pages to move into.",
    "compact_isolated": "Pages compaction isolated for moving.",
    "compact_daemon_wake": "Times the background compaction thread (kcompactd) woke up.",
    "compact_daemon_migrate_scanned": "Pages the background compaction thread (kcompactd) scanned for pages to move.",
    "compact_daemon_free_scanned": "Pages the background compaction thread (kcompactd) scanned for free pages.",
    "allocstall": "Times an allocating task stalled to reclaim memory itself (direct reclaim).",
    "oom_kill": "Processes killed by the out-of-memory killer.",
    "drop_pagecache": "Times the page cache was dropped through /proc/sys/vm/drop_caches.",
    "drop_slab": "Times reclaimable slab objects were dropped through /proc/sys/vm/drop_caches.",
    "kswapd_inodesteal": "Pages background reclaim (kswapd) freed by evicting inodes.",
    "kswapd_low_wmark_hit_quickly": "Times background reclaim (kswapd) went back to work soon after sleeping "
                                    "because a zone fell below its low watermark again.",
    "kswapd_high_wmark_hit_quickly": "Times background reclaim (kswapd) found a zone above its high watermark "
                                     "soon after sleeping.",
    "pgscan_direct_throttle": "Times direct reclaim was throttled because reclaim was making no progress.",
    "thp_fault_fallback": "Page faults that wanted a transparent huge page but fell back to small pages.",
    "thp_file_fallback": "Page cache allocations that wanted a huge page but fell back to small pages.",
    "thp_swpout_fallback": "Huge pages split before swap-out because no contiguous swap space was free.",
}
_RECLAIMERS = {
    "kswapd": "background reclaim (kswapd)",
    "direct": "direct reclaim (allocating tasks reclaiming themselves)",
    "khugepaged": "reclaim on behalf of khugepaged",
    "proactive": "proactive reclaim (memory.reclaim)",
    "anon": "reclaim from anonymous memory",
    "file": "reclaim from the page cache",
}


@functools.lru_cache(maxsize=4096)
def field_help(field: str) -> str:
    """A HELP text for a vmstat field."""
    return f"{_HELP.get(field) or _derived_help(field)} (/proc/vmstat {field})"


def _derived_help(field: str) -> str:
    """The HELP text of a field without its own, from the family its name belongs to."""
    kind, _, rest = field.partition("_")
    if kind in ("pgscan", "pgsteal") and rest:
        reclaimer, _, zone = rest.partition("_")  # 3.10 adds the zone: pgscan_kswapd_normal
        who = _RECLAIMERS.get(reclaimer, reclaimer)
        where = f" in zone {zone}" if zone else ""
        return f"Pages {'scanned' if kind == 'pgscan' else 'reclaimed'} by {who}{where}."
    if kind == "allocstall" and rest:
        return f"Times an allocating task stalled to reclaim memory itself (direct reclaim) for zone {rest}."
    if field.startswith("thp_") and field.endswith("_fallback"):
        return f"Transparent huge page allocations ({field[4:-9]}) that fell back to small pages."
    if is_gauge(field):
        return "Current value of this /proc/vmstat field (mostly a number of pages)."
    return "Events of this kind since boot."


class VmstatCollector(Collector):
    name = "vmstat"
    description = "compaction, reclaim and OOM counters from /proc/vmstat"
    options = (
        Setting("collector.vmstat.fields", parse_regex, DEFAULT_FIELDS,
                "Regular expression matched against whole /proc/vmstat field names: the fields to export "
                "(nr_* fields become gauges, the rest counters).", "REGEX"),
    )

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        fields = files.parse(self.config.procfs / "vmstat", parse_vmstat)
        pattern: re.Pattern[str] = self.option("fields")  # type: ignore[assignment]
        for field, value in fields.items():
            if _selected(pattern, field):
                yield RowFamily.single(f"kmem_vmstat_{field}", field_help(field),
                                       "gauge" if is_gauge(field) else "counter", value)


@functools.lru_cache(maxsize=4096)
def _selected(pattern: re.Pattern[str], field: str) -> bool:
    return pattern.fullmatch(field) is not None
