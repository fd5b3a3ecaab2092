"""Free blocks per migrate type and pageblocks per migrate type, from /proc/pagetypeinfo."""

from __future__ import annotations

import os
from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from kmem_exporter.collectors.base import Collector
from kmem_exporter.collectors.errors import CollectorError
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.parsers.pagetypeinfo import CAP, parse_pagetypeinfo


class PagetypeinfoCollector(Collector):
    name = "pagetypeinfo"
    description = "free blocks and pageblocks per migrate type from /proc/pagetypeinfo (root only since Linux 5.4)"
    # Off by default: the kernel counts every free block of a zone with the zone's lock held and interrupts off to
    # print this file (5 ms a read on a 24 GiB test machine), which is why Linux 5.4 made it root-only; buddyinfo
    # and extfrag say what the alerts and dashboards need.
    default_enabled = False

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        path = self.config.procfs / "pagetypeinfo"
        try:
            info = files.parse(path, parse_pagetypeinfo)
        except CollectorError:
            if os.access(path, os.F_OK) and not os.access(path, os.R_OK):
                raise CollectorError(
                    f"{path}: permission denied: readable by root only since Linux 5.4 (run as root, or turn this "
                    f"collector off with --no-collector.pagetypeinfo)") from None
            raise
        free = GaugeMetricFamily(
            "kmem_pagetype_free_blocks",
            f"Free blocks of 2^order contiguous pages per NUMA node, zone and migrate type. The kernel stops counting "
            f"at {CAP} (it prints >{CAP}); such a count is exported as {CAP} and means at least that many.",
            labels=["node", "zone", "migratetype", "order"],
        )
        for row in info.free:
            for order, count in enumerate(row.free_blocks):
                free.add_metric([row.node, row.zone, row.migratetype, str(order)], count)
        blocks = GaugeMetricFamily(
            "kmem_pagetype_pageblocks",
            "Pageblocks (2^pageblock_order pages each) per NUMA node, zone and the migrate type they are assigned "
            "to. Unmovable and reclaimable blocks spread over a zone keep it from being compacted.",
            labels=["node", "zone", "migratetype"],
        )
        for zone in info.pageblocks:
            for mtype, count in zone.pageblocks:
                blocks.add_metric([zone.node, zone.zone, mtype], count)
        pageblock_order = GaugeMetricFamily(
            "kmem_pageblock_order",
            "The order of a pageblock, the unit in which the kernel assigns memory to migrate types "
            "(9 on x86-64: 512 pages).",
            value=info.pageblock_order,
        )
        return [free, blocks, pageblock_order]
