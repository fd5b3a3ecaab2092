"""Connection tracking: its slab caches (one per network namespace on 3.10 kernels) and how full its table is."""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.collectors.base import Collector, KernelFiles
from exporter.collectors.slabinfo import read_slab_caches
from exporter.sources.slabinfo import SlabCache, family_name, is_memcg_copy
from exporter.sources.sysctl import parse_sysctl_int


def is_conntrack_cache(name: str) -> bool:
    """`nf_conntrack` (a single cache on newer kernels), `nf_conntrack_<address>` or `nf_conntrack_<number>` (one per
    network namespace on 3.10 and other older kernels). Not `nf_conntrack_expect`, and not a memory cgroup's copy of
    one of them."""
    return family_name(name) == "nf_conntrack" and not is_memcg_copy(name)


class ConntrackCollector(Collector):
    name = "conntrack"
    description = "nf_conntrack slab caches (/proc/slabinfo, root only) and table fill (/proc/sys/net/netfilter)"

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        caches = [c for c in read_slab_caches(self.config, files) if is_conntrack_cache(c.name)]
        yield from _cache_metrics(caches)
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


def _cache_metrics(caches: list[SlabCache]) -> Iterable[Metric]:
    yield GaugeMetricFamily(
        "kmem_nf_conntrack_slab_caches",
        "Slab caches of connection tracking. 3.10 kernels (RHEL/CentOS 7) create one per network namespace and may "
        "not free it when the namespace goes: compare with kmem_network_namespaces.", value=len(caches))
    yield GaugeMetricFamily("kmem_nf_conntrack_slab_objects_active",
                            "Objects in use in all conntrack slab caches together.",
                            value=sum(c.active_objects for c in caches))
    yield GaugeMetricFamily("kmem_nf_conntrack_slab_objects",
                            "Objects the conntrack slab caches have room for, in use or free.",
                            value=sum(c.objects for c in caches))
