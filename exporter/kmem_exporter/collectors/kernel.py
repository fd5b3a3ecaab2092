"""The running kernel's release and whether kernel-memory accounting was turned off at boot."""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from kmem_exporter.collectors.base import Collector
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.parsers.kernel import kmem_disabled_at_boot, parse_release_string


class KernelCollector(Collector):
    name = "kernel"
    description = "kernel release and cgroup.memory=nokmem from /proc/sys/kernel/osrelease and /proc/cmdline"

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        release = files.parse_value(self.config.procfs / "sys" / "kernel" / "osrelease", parse_release_string)
        nokmem = files.parse_value(self.config.procfs / "cmdline", kmem_disabled_at_boot)
        info = InfoMetricFamily("kmem_kernel", "The running kernel's release (uname -r); the value is always 1.",
                                value={"release": release})
        boot = GaugeMetricFamily(
            "kmem_kernel_boot_nokmem",
            "1 when the kernel was booted with cgroup.memory=nokmem (no kernel-memory accounting in memory "
            "cgroups), else 0.",
            value=1.0 if nokmem else 0.0,
        )
        return [info, boot]
