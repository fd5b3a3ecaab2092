"""Connection tracking: its slab caches (one per network namespace on 3.10 kernels) and how full its table is."""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from kmem_exporter.collectors.base import Collector
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.collectors.slabinfo import read_slab_summary
from kmem_exporter.parsers.slabinfo import ConntrackCaches
from kmem_exporter.parsers.sysctl import parse_sysctl_int


class ConntrackCollector(Collector):
    name = "conntrack"
    description = "nf_conntrack slab caches (/proc/slabinfo, root only) and table fill (/proc/sys/net/netfilter)"

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        yield from _cache_metrics(read_slab_summary(self.config, files).conntrack)
        netfilter = self.config.procfs / "sys" / "net" / "netfilter"
        entries = files.parse_optional_value(netfilter / "nf_conntrack_count", parse_sysctl_int)
        limit = files.parse_optional_value(netfilter / "nf_conntrack_max", parse_sysctl_int)
        if entries is not None:
            yield GaugeMetricFamily(
                "kmem_nf_conntrack_entries",
                "Connections in the conntrack table of the exporter's network namespace (absent when conntrack is "
                "not loaded).", value=entries)
        if limit is not None:
            yield GaugeMetricFamily(
                "kmem_nf_conntrack_entries_limit",
                "Size limit of the conntrack table (nf_conntrack_max); new connections are dropped when it is "
                "reached.", value=limit)


def _cache_metrics(caches: ConntrackCaches) -> Iterable[Metric]:
    yield GaugeMetricFamily(
        "kmem_nf_conntrack_slab_caches",
        "Slab caches of connection tracking. 3.10 kernels (RHEL/CentOS 7) create one per network namespace and may "
        "not free it when the namespace goes: compare with kmem_network_namespaces.", value=caches.caches)
    yield GaugeMetricFamily("kmem_nf_conntrack_slab_objects_active",
                            "Objects in use in all conntrack slab caches together.", value=caches.active_objects)
    yield GaugeMetricFamily("kmem_nf_conntrack_slab_objects",
                            "Objects the conntrack slab caches have room for, in use or free.", value=caches.objects)
