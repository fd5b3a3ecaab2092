"""The vm sysctls that steer reclaim, compaction and watermarks, from /proc/sys/vm/."""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from kmem_exporter.collectors.base import Collector
from kmem_exporter.collectors.errors import CollectorError
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.parsers.sysctl import parse_sysctl_int

# Older kernels lack some of these (3.10 has no watermark_scale_factor, watermark_boost_factor or
# compaction_proactiveness); an absent file is simply not exported.
SYSCTLS = (
    "compaction_proactiveness",
    "extfrag_threshold",
    "min_free_kbytes",
    "vfs_cache_pressure",
    "watermark_boost_factor",
    "watermark_scale_factor",
    "zone_reclaim_mode",
)


class SysctlCollector(Collector):
    name = "sysctl"
    description = "reclaim and compaction tunables from /proc/sys/vm"

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        directory = self.config.procfs / "sys" / "vm"
        if not directory.is_dir():
            raise CollectorError(f"{directory}: directory not found")
        family = GaugeMetricFamily(
            "kmem_vm_sysctl",
            "Value of a vm sysctl (/proc/sys/vm/<sysctl>) that steers reclaim, compaction and watermarks, in its "
            "own unit (min_free_kbytes in KiB, the others as ratios or modes the kernel documents).",
            labels=["sysctl"],
        )
        for sysctl in SYSCTLS:
            value = files.parse_optional_value(directory / sysctl, parse_sysctl_int)
            if value is not None:
                family.add_metric([sysctl], value)
        return [family]
