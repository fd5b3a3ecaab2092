"""The kernel messages the kernel_log collector counts: one table, each row checkable against the kernel source.

Each pattern is searched (not anchored) in the text of one kernel-facility record of /dev/kmsg; the kernel's own
prefix (`<comm>: `, `nf_conntrack: `) and a syslog prefix in front of a line copied from a log file do not matter.
A record matches at most one pattern (the first in the table). An `order` group gives the allocation order.

One occurrence is one count: every pattern matches exactly one line form that the kernel prints once per
occurrence, and never the lines printed around it. An OOM kill is counted on the "Killed process" line, which every
kernel version prints once per victim (RHEL 6, RHEL 7 and mainline spell it differently); the line announcing the
choice ("Kill process N (x) score S or sacrifice child", 2.6.32 to 4.19) and the memory report before it are not
counted. kernel_log_formats.md, beside this module, lists the format strings by kernel version.
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
        #   2.6.32 (RHEL 6) __alloc_pages_slowpath: "%s: page allocation failure. order:%d, mode:0x%x\n"
        #   3.x-4.5 (RHEL 7) warn_alloc_failed:     "%s: page allocation failure: order:%d, mode:0x%x\n"
        #   4.6-4.8 warn_alloc_failed:              "%s: page allocation failure: order:%u, mode:%#x(%pGg)\n"
        #   4.9-4.14 warn_alloc: "page allocation failure: order:%u" as one pr_cont("%pV") fragment after
        #                        pr_warn("%s: "), then ", mode:%#x(%pGg)" (4.10+: ", nodemask=...")
        #   4.19+ warn_alloc:    "%s: %pV, mode:%#x(%pGg), nodemask=%*pbl" (5.x+: ",cpuset=%s,mems_allowed=%*pbl"
        #                        on the same line)
        # 3.x-4.8 vmalloc failures print this line too (order 0), after their own "vmalloc: allocation failure".
        re.compile(r"page allocation failure[:.] order:(?P<order>\d+)"),
        "mm/page_alloc.c: __alloc_pages_slowpath (2.6.32), warn_alloc_failed (3.x-4.8), warn_alloc (4.9+)",
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
        #   2.6.32-4.5: "SLUB: Unable to allocate memory on node %d (gfp=0x%x)\n"
        #   4.6-6.11:   "SLUB: Unable to allocate memory on node %d, gfp=%#x(%pGg)\n"
        #   6.12+:      "SLUB: Unable to allocate memory on CPU %u (of node %d) on node %d, gfp=%#x(%pGg)\n"
        # Not "SLUB: Unable to allocate memory from node %d" (boot-time node structures) nor SLAB's own line.
        re.compile(r"SLUB: Unable to allocate memory on (?:CPU \d+ \(of node -?\d+\) on )?node -?\d+(?: \(|, )"
                   r"gfp=0x[0-9a-f]+"),
        "mm/slub.c: slab_out_of_memory",
    ),
    EventPattern(
        "slab_cache_create_failure",
        # mm/slab_common.c, creating a slab cache failed (a per-netns nf_conntrack_<address> cache on 3.10):
        #   3.10 kmem_cache_create_memcg, 4.4 kmem_cache_create: "kmem_cache_create(%s) failed with error %d"
        #                                 (no newline: the next message may run on in the same record)
        #   4.9-5.10 kmem_cache_create(_usercopy): "kmem_cache_create(%s) failed with error %d\n"
        #   5.15-6.11 kmem_cache_create_usercopy, 6.12+ __kmem_cache_create_args: "%s(%s) failed with error %d\n"
        #   with __func__. The cache name may itself hold parentheses (memcg caches on 3.x-4.x:
        #   "dentry(1234:docker-abc)"). RHEL 6 (2.6.32) prints nothing unless SLAB_PANIC, which panics.
        re.compile(r"\b\w*kmem_cache_create\w*\(.+\) failed with error -?\d+"),
        "mm/slab_common.c: kmem_cache_create_memcg (3.10), kmem_cache_create(_usercopy), __kmem_cache_create_args",
    ),
    EventPattern(
        "nf_conntrack_cache_failure",
        # net/netfilter/nf_conntrack_core.c nf_conntrack_init_net, one slab cache per network namespace
        # (2.6.32 RHEL 6, 3.10 RHEL 7, 4.4; gone by 4.9, where one global cache is made at module load, silently):
        #   printk(KERN_ERR "Unable to create nf_conn slab cache\n")
        re.compile(r"Unable to create nf_conn slab cache"),
        "net/netfilter/nf_conntrack_core.c: nf_conntrack_init_net",
    ),
    EventPattern(
        "nf_conntrack_table_full",
        # net/netfilter/nf_conntrack_core.c __nf_conntrack_alloc / init_conntrack:
        #   2.6.32:    "nf_conntrack: table full, dropping packet.\n"
        #   3.10-4.4:  net_warn_ratelimited("nf_conntrack: table full, dropping packet\n")
        #   4.9+:      the same with pr_fmt, printed "nf_conntrack: nf_conntrack: table full, dropping packet"
        #   6.17+:     outside the initial network namespace "... table full in netns %u, dropping packet\n"
        # Not "expectation table full" (nf_conntrack_expect.c).
        re.compile(r"nf_conntrack: table full(?: in netns \d+)?, dropping packet"),
        "net/netfilter/nf_conntrack_core.c: nf_conntrack_alloc (2.6.32), __nf_conntrack_alloc",
    ),
    EventPattern(
        "netdev_unregister_wait",
        # net/core/dev.c netdev_wait_allrefs (netdev_wait_allrefs_any in 5.17+), every 10 seconds (5.15+:
        # net.core.netdev_unregister_timeout_secs) while a device that is being removed still has references, the
        # same text in every version (2.6.32 splits the literal, not the line):
        #   pr_emerg("unregister_netdevice: waiting for %s to become free. Usage count = %d\n", ...)
        re.compile(r"unregister_netdevice: waiting for \S+ to become free\. Usage count = -?\d+"),
        "net/core/dev.c: netdev_wait_allrefs(_any)",
    ),
    EventPattern(
        "oom_kill",
        # mm/oom_kill.c, once per victim (not the "Kill process ... or sacrifice child" line before it, nor the
        # processes sharing its memory), in four spellings:
        #   mainline 2.6.32 __oom_kill_task: "Killed process %d (%s)\n" (nothing after the name)
        #   RHEL 6 (2.6.32) oom_kill_task:  "Killed process %d, UID %d, (%s) total-vm:%lukB, ..."
        #   RHEL 7 (3.10, later updates):   "Killed process %d (%s), UID %d, total-vm:%lukB, ..."
        #   mainline 3.x-4.18 oom_kill_process, 4.19 __oom_kill_process:
        #                                   "Killed process %d (%s) total-vm:%lukB, ..."
        #   mainline 5.x+ __oom_kill_process:   "%s: Killed process %d (%s) total-vm:%lukB, ..." with
        #   "Out of memory" or "Memory cgroup out of memory" as %s.
        re.compile(r"\bKilled process \d+(?:, UID -?\d+,)? \(.*\)(?:(?:, UID -?\d+,)? total-vm:\d+kB|\s*$)"),
        "mm/oom_kill.c: (__)oom_kill_task (2.6.32), oom_kill_process (3.x-4.18), __oom_kill_process (4.19+)",
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
