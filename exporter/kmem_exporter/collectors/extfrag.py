"""The kernel's fragmentation indices per node, zone and order: from debugfs when readable, else computed from
/proc/buddyinfo with the kernel's own arithmetic (same values)."""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from kmem_exporter.collectors.base import Collector
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.parsers.buddyinfo import parse_buddyinfo
from kmem_exporter.parsers.extfrag import ZoneIndex, compute_indices, parse_index_file


class ExtfragCollector(Collector):
    name = "extfrag"
    description = ("fragmentation indices per zone and order from <debugfs>/extfrag, or computed from "
                   "/proc/buddyinfo when debugfs is not readable")

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        directory = self.config.debugfs / "extfrag"
        extfrag_path, unusable_path = directory / "extfrag_index", directory / "unusable_index"
        # Absent, or not to be read (debugfs not mounted, root-only without CAP_DAC_READ_SEARCH, kernel lockdown):
        # the indices are then computed. Opening is the only honest test of readability, since os.access() looks at
        # the real uid and ignores capabilities.
        unreadable = (FileNotFoundError, NotADirectoryError, PermissionError)
        extfrag = files.parse_optional(extfrag_path, parse_index_file, absent=unreadable)
        unusable = files.parse_optional(unusable_path, parse_index_file, absent=unreadable)
        if extfrag is not None and unusable is not None:
            source = "debugfs"
        else:
            source = "computed"
            extfrag, unusable = compute_indices(files.parse(self.config.procfs / "buddyinfo", parse_buddyinfo))

        extfrag_family = _family(
            "kmem_extfrag_index",
            "The kernel's fragmentation index of an allocation of 2^order pages: -1 when a free block that big "
            "exists (it would succeed now); otherwise near 0 it would fail for lack of memory (reclaim helps), near "
            "1 because free memory is fragmented (compaction helps).",
            extfrag,
        )
        unusable_family = _family(
            "kmem_unusable_index",
            "The kernel's unusable free space index: the share of free memory (0..1) in blocks too small for an "
            "allocation of 2^order pages; 1 when nothing is free.",
            unusable,
        )
        info = GaugeMetricFamily(
            "kmem_extfrag_source_info",
            "Where the fragmentation indices come from: debugfs (read from <debugfs>/extfrag) or computed "
            "(from /proc/buddyinfo with the kernel's formula, when debugfs is not readable); always 1.",
            labels=["source"],
        )
        info.add_metric([source], 1)
        return [extfrag_family, unusable_family, info]


def _family(name: str, documentation: str, zones: list[ZoneIndex]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["node", "zone", "order"])
    for zone in zones:
        for order, value in enumerate(zone.ratios()):
            family.add_metric([zone.node, zone.zone, str(order)], value)
    return family
