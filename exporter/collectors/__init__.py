"""The collectors, registered by name. The order here is the order of their flags in --help."""

from __future__ import annotations

from exporter.collectors.base import Collector
from exporter.collectors.buddyinfo import BuddyinfoCollector
from exporter.collectors.conntrack import ConntrackCollector
from exporter.collectors.extfrag import ExtfragCollector
from exporter.collectors.kernel import KernelCollector
from exporter.collectors.kernel_log import KernelLogCollector
from exporter.collectors.memcg import MemcgCollector
from exporter.collectors.netns import NetnsCollector
from exporter.collectors.pagetypeinfo import PagetypeinfoCollector
from exporter.collectors.slabinfo import SlabinfoCollector
from exporter.collectors.sysctl import SysctlCollector
from exporter.collectors.vmstat import VmstatCollector
from exporter.collectors.zoneinfo import ZoneinfoCollector

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
