"""The kernel messages the kernel_log collector counts: one table, each row checkable against the kernel source.

Each pattern is searched (not anchored) in the text of one kernel-facility record of /dev/kmsg; the kernel's own
prefix (`<comm>: `, `nf_conntrack: `) and a syslog prefix in front of a line copied from a log file do not matter.
A record matches at most one pattern (the first in the table). An `order` group gives the allocation order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

# Orders are 0..MAX_ORDER-1 (10 on x86, up to 13 on arm64 with 64K pages; no kernel goes past 20). A larger number
# cannot come from a real kernel (a garbled line), and is counted under order="other" so totals stay right while
# the label stays bounded.
MAX_ORDER_LABEL = 20
OTHER_ORDER = "other"


@dataclass(frozen=True)
class EventPattern:
    event: str
    regex: re.Pattern[str]
    source: str  # where the kernel prints it: file and function

    @property
    def has_order(self) -> bool:
        return "order" in self.regex.groupindex


PATTERNS: tuple[EventPattern, ...] = (
    EventPattern(
        "page_allocation_failure",
        # mm/page_alloc.c, the page allocator's slow path giving up:
        #   2.6.x __alloc_pages_slowpath: "%s: page allocation failure. order:%d, mode:0x%x\n"
        #   3.x warn_alloc_failed:        "%s: page allocation failure: order:%d, mode:0x%x\n"       (RHEL 7 3.10)
        #   4.6+ warn_alloc(_failed):     "%s: page allocation failure: order:%u, mode:%#x(%pGg)"
        #   4.10+ warn_alloc:             "%s: %pV, mode:%#x(%pGg), nodemask=%*pbl" with "page allocation failure:
        #                                 order:%u" as %pV, then cpuset_print_current_mems_allowed()'s
        #                                 ",cpuset=%s,mems_allowed=%*pbl" on the same line (4.12+).
        re.compile(r"page allocation failure[:.] order:(?P<order>\d+)"),
        "mm/page_alloc.c: __alloc_pages_slowpath (2.6), warn_alloc_failed (3.x), warn_alloc (4.x+)",
    ),
    EventPattern(
        "page_allocation_stall",
        # mm/page_alloc.c __alloc_pages_slowpath via warn_alloc, 4.9 to 4.14 (removed in 4.15):
        #   warn_alloc(gfp_mask, "page allocation stalls for %ums, order:%u", ...)
        # The first version of the message spelled it "alloction"; both spellings are accepted.
        re.compile(r"page alloca?tion stalls for \d+ms, order:(?P<order>\d+)"),
        "mm/page_alloc.c: __alloc_pages_slowpath -> warn_alloc (4.9-4.14)",
    ),
    EventPattern(
        "slub_allocation_failure",
        # mm/slub.c slab_out_of_memory:
        #   3.x:  "SLUB: Unable to allocate memory on node %d (gfp=0x%x)\n"
        #   4.6+: "SLUB: Unable to allocate memory on node %d, gfp=%#x(%pGg)\n"
        re.compile(r"SLUB: Unable to allocate memory on node -?\d+(?: \(|, )gfp=0x[0-9a-f]+"),
        "mm/slub.c: slab_out_of_memory",
    ),
    EventPattern(
        "slab_cache_create_failure",
        # mm/slab_common.c, creating a slab cache failed (a per-netns nf_conntrack_<address> cache on 3.10):
        #   3.10 kmem_cache_create_memcg: "kmem_cache_create(%s) failed with error %d" (no trailing newline)
        #   4.x kmem_cache_create(_usercopy): "kmem_cache_create(%s) failed with error %d\n"
        #   later "%s(%s) failed with error %d\n" with __func__: kmem_cache_create_usercopy,
        #   __kmem_cache_create_args (6.12+). The cache name may itself hold parentheses (memcg caches on 3.x-4.x:
        #   "dentry(1234:docker-abc)").
        re.compile(r"\b\w*kmem_cache_create\w*\(.+\) failed with error -?\d+"),
        "mm/slab_common.c: kmem_cache_create_memcg (3.10), kmem_cache_create(_usercopy), __kmem_cache_create_args",
    ),
    EventPattern(
        "nf_conntrack_cache_failure",
        # net/netfilter/nf_conntrack_core.c nf_conntrack_init_net (3.x, per network namespace):
        #   printk(KERN_ERR "Unable to create nf_conn slab cache\n")
        re.compile(r"Unable to create nf_conn slab cache"),
        "net/netfilter/nf_conntrack_core.c: nf_conntrack_init_net",
    ),
    EventPattern(
        "nf_conntrack_table_full",
        # net/netfilter/nf_conntrack_core.c __nf_conntrack_alloc / init_conntrack:
        #   older: "nf_conntrack: table full, dropping packet.\n"
        #   newer: net_warn_ratelimited("nf_conntrack: table full, dropping packet\n"), which pr_fmt prints as
        #   "nf_conntrack: nf_conntrack: table full, dropping packet". Not "expectation table full" (nf_ct_expect).
        re.compile(r"nf_conntrack: table full, dropping packet"),
        "net/netfilter/nf_conntrack_core.c: __nf_conntrack_alloc",
    ),
    EventPattern(
        "netdev_unregister_wait",
        # net/core/dev.c netdev_wait_allrefs (netdev_wait_allrefs_any in 5.17+), every 10 seconds while a
        # device that is being removed still has references:
        #   pr_emerg("unregister_netdevice: waiting for %s to become free. Usage count = %d\n", ...)
        re.compile(r"unregister_netdevice: waiting for \S+ to become free\. Usage count = -?\d+"),
        "net/core/dev.c: netdev_wait_allrefs(_any)",
    ),
    EventPattern(
        "oom_kill",
        # mm/oom_kill.c, once per victim (not the "Kill process ... or sacrifice child" line before it, nor the
        # processes sharing its memory):
        #   3.x-4.x oom_kill_process: "Killed process %d (%s) total-vm:%lukB, anon-rss:%lukB, file-rss:%lukB..."
        #   5.x+ __oom_kill_process: "%s: Killed process %d (%s) total-vm:%lukB, ..." with "Out of memory" or
        #   "Memory cgroup out of memory" as %s.
        re.compile(r"\bKilled process \d+ \(.*\) total-vm:\d+kB"),
        "mm/oom_kill.c: oom_kill_process (3.x-4.x), __oom_kill_process (5.x+)",
    ),
)

EVENTS: tuple[str, ...] = tuple(p.event for p in PATTERNS)
EVENTS_WITH_ORDER: tuple[str, ...] = tuple(p.event for p in PATTERNS if p.has_order)


@dataclass(frozen=True)
class KernelEvent:
    event: str
    order: Optional[str]  # None for events without an order


def order_label(order: str) -> str:
    """The order as a label value: the number, or "other" beyond any kernel's orders (or not in ASCII digits)."""
    if not (order.isascii() and order.isdigit()) or len(order) > 3:
        return OTHER_ORDER
    number = int(order)
    return str(number) if number <= MAX_ORDER_LABEL else OTHER_ORDER


def match_event(text: str) -> Optional[KernelEvent]:
    """The event a kernel message reports, or None."""
    for pattern in PATTERNS:
        match = pattern.regex.search(text)
        if match:
            order = match.group("order") if pattern.has_order else None
            return KernelEvent(pattern.event, None if order is None else order_label(order))
    return None
