"""Free memory, watermarks and managed memory per NUMA node and zone, from /proc/zoneinfo."""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from kmem_exporter.collectors.base import Collector
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.parsers.zoneinfo import parse_zoneinfo


class ZoneinfoCollector(Collector):
    name = "zoneinfo"
    description = "free memory, min/low/high watermarks and managed memory per zone from /proc/zoneinfo"

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        zones = files.parse(self.config.procfs / "zoneinfo", parse_zoneinfo)
        page = self.page_size
        free = GaugeMetricFamily(
            "kmem_zone_free_bytes",
            "Free memory in the zone (the kernel's 'pages free'), per NUMA node.",
            labels=["node", "zone"],
        )
        watermark = GaugeMetricFamily(
            "kmem_zone_watermark_bytes",
            "The zone's watermarks: below low, kswapd reclaims in the background until free reaches high; below min, "
            "allocations stall in direct reclaim and compaction.",
            labels=["node", "zone", "watermark"],
        )
        managed = GaugeMetricFamily(
            "kmem_zone_managed_bytes",
            "Memory of the zone managed by the buddy allocator (present memory minus what the kernel reserved at "
            "boot).",
            labels=["node", "zone"],
        )
        for zone in zones:
            if not zone.populated:  # listed by the kernel but holds no memory; buddyinfo leaves it out too
                continue
            labels = [zone.node, zone.zone]
            free.add_metric(labels, zone.free_pages * page)
            for name, pages in (("min", zone.min_pages), ("low", zone.low_pages), ("high", zone.high_pages)):
                watermark.add_metric(labels + [name], pages * page)
            if zone.managed_pages is not None:
                managed.add_metric(labels, zone.managed_pages * page)
        return [free, watermark, managed]
