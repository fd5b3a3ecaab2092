"""Free blocks per NUMA node, zone and order, from /proc/buddyinfo."""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from kmem_exporter.collectors.base import Collector
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.families import RowFamily
from kmem_exporter.parsers.buddyinfo import parse_buddyinfo


class BuddyinfoCollector(Collector):
    name = "buddyinfo"
    description = "free blocks per node, zone and order from /proc/buddyinfo"

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        zones = files.parse(self.config.procfs / "buddyinfo", parse_buddyinfo)
        free_labels, free_values, largest_labels, largest_values = [], [], [], []
        for zone in zones:
            for order, count in enumerate(zone.free_blocks):
                free_labels.append((zone.node, zone.zone, str(order)))
                free_values.append(count)
            largest_labels.append((zone.node, zone.zone))
            largest_values.append(zone.largest_free_order)
        free = RowFamily("kmem_buddy_free_blocks",
                         "Free blocks of 2^order contiguous pages in the buddy allocator, per NUMA node and zone.",
                         "gauge", ("node", "zone", "order"), free_labels, free_values)
        largest = RowFamily("kmem_buddy_largest_free_order",
                            "The highest order with at least one free block (-1: none). An allocation of a higher "
                            "order needs reclaim or compaction first.", "gauge", ("node", "zone"), largest_labels,
                            largest_values)
        page_size = GaugeMetricFamily("kmem_page_size_bytes", "The kernel's page size; a block of order N holds "
                                      "page_size * 2^N bytes.", value=self.page_size)
        return [free, largest, page_size]
