"""The collectors, registered by name. The order here is the order of their flags in --help."""

from __future__ import annotations

from kmem_exporter.collectors.base import Collector
from kmem_exporter.collectors.buddyinfo import BuddyinfoCollector
from kmem_exporter.collectors.conntrack import ConntrackCollector
from kmem_exporter.collectors.extfrag import ExtfragCollector
from kmem_exporter.collectors.kernel import KernelCollector
from kmem_exporter.collectors.kernel_log import KernelLogCollector
from kmem_exporter.collectors.memcg import MemcgCollector
from kmem_exporter.collectors.netns import NetnsCollector
from kmem_exporter.collectors.pagetypeinfo import PagetypeinfoCollector
from kmem_exporter.collectors.slabinfo import SlabinfoCollector
from kmem_exporter.collectors.sysctl import SysctlCollector
from kmem_exporter.collectors.vmstat import VmstatCollector
from kmem_exporter.collectors.zoneinfo import ZoneinfoCollector

COLLECTORS: dict[str, type[Collector]] = {
    cls.name: cls
    for cls in (
        BuddyinfoCollector,
        PagetypeinfoCollector,
        ExtfragCollector,
        ZoneinfoCollector,
        VmstatCollector,
        SysctlCollector,
        KernelCollector,
        SlabinfoCollector,
        ConntrackCollector,
        NetnsCollector,
        MemcgCollector,
        KernelLogCollector,
    )
}
