"""The kernel_log pattern table against real kernel lines (the field samples) and the formats of other versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmem_exporter.parsers.kernel_log_patterns import (
    EVENTS,
    EVENTS_WITH_ORDER,
    MAX_ORDER_LABEL,
    PATTERNS,
    KernelEvent,
    match_event,
)

SAMPLES = Path(__file__).parent / "samples"


def sample_lines(name: str) -> list[str]:
    return [line for line in (SAMPLES / name).read_text().splitlines() if line and not line.startswith("#")]


# Lines as the field samples hold them (syslog prefixes included).
REAL_LINES = [
    ("Nov 12 15:15:41 kernel: exe: page allocation failure: order:6, mode:0x10c0d0",
     KernelEvent("page_allocation_failure", "6")),
    ("Nov 12 15:15:41 kernel: kmem_cache_create(nf_conntrack_ffff8803eef66180) failed with error -12",
     KernelEvent("slab_cache_create_failure", None)),
    ("Nov 12 15:15:41 kernel: Unable to create nf_conn slab cache", KernelEvent("nf_conntrack_cache_failure", None)),
    ("mysqld: page allocation failure. order:4, mode:0x10c0d0", KernelEvent("page_allocation_failure", "4")),
    ("SLUB: Unable to allocate memory on node -1 (gfp=0x2000000)", KernelEvent("slub_allocation_failure", None)),
    ("Feb 28 11:16:37 MyHOST kernel: [4395803.602414] python: page allocation stalls for 15412ms, order:1, "
     "mode:0x26040c0(GFP_KERNEL|__GFP_COMP|__GFP_NOTRACK)", KernelEvent("page_allocation_stall", "1")),
    ("kernel:unregister_netdevice: waiting for eth0 to become free. Usage count = 1",
     KernelEvent("netdev_unregister_wait", None)),
]

# The texts /dev/kmsg gives for the same messages on other kernel versions (format strings from the sources cited
# in the pattern table, filled in as those kernels print them).
VARIANTS = [
    # mm/page_alloc.c warn_alloc, 4.6-4.9: symbolic gfp flags
    ("stapio: page allocation failure: order:9, mode:0x2080020(GFP_ATOMIC)", "page_allocation_failure", "9"),
    # 4.10-4.11: nodemask
    ("kworker/u16:2: page allocation failure: order:0, mode:0x2080020(GFP_ATOMIC), nodemask=(null)",
     "page_allocation_failure", "0"),
    # 4.12+: cpuset and mems_allowed on the same line
    ("runc:[1:CHILD]: page allocation failure: order:4, mode:0x6000c0(GFP_KERNEL), nodemask=(null),"
     "cpuset=/,mems_allowed=0", "page_allocation_failure", "4"),
    ("java: page allocation failure: order:5, mode:0x40dc0(GFP_KERNEL|__GFP_COMP|__GFP_ZERO), "
     "nodemask=(null),cpuset=kubepods-burstable-pod1234.slice,mems_allowed=0-1", "page_allocation_failure", "5"),
    # 3.x with order 10 (the largest on x86) and 2.6's "failure." form with GFP_NOWAIT's mode 0
    ("swapper/0: page allocation failure: order:10, mode:0x4020", "page_allocation_failure", "10"),
    ("events/0: page allocation failure. order:1, mode:0x0", "page_allocation_failure", "1"),
    # page allocation stalls, 4.10-4.14 with nodemask; the first 4.9 version misspelled "allocation"
    ("kswapd0: page allocation stalls for 10036ms, order:0, mode:0x14200ca(GFP_HIGHUSER_MOVABLE), nodemask=(null)",
     "page_allocation_stall", "0"),
    ("a.out: page alloction stalls for 10000ms, order:2, mode:0x24201ca(GFP_HIGHUSER_MOVABLE|__GFP_COLD)",
     "page_allocation_stall", "2"),
    # mm/slub.c slab_out_of_memory, 4.6+
    ("SLUB: Unable to allocate memory on node -1, gfp=0x8020(GFP_ATOMIC|__GFP_ZERO)", "slub_allocation_failure",
     None),
    ("SLUB: Unable to allocate memory on node 1, gfp=0x6080c0(GFP_KERNEL|__GFP_ZERO)", "slub_allocation_failure",
     None),
    # mm/slab_common.c: 3.10 without the trailing newline (text of the next message run on), 4.x, 4.16+, 6.12+
    ("kmem_cache_create(nf_conntrack_ffff8803eef66180) failed with error -12CPU: 1 PID: 18377 Comm: exe",
     "slab_cache_create_failure", None),
    ("kmem_cache_create(dentry(1234:docker-4f1c)) failed with error -12", "slab_cache_create_failure", None),
    ("kmem_cache_create_usercopy(nf_conntrack) failed with error -12", "slab_cache_create_failure", None),
    ("__kmem_cache_create_args(kmalloc-rcl-8k) failed with error -22", "slab_cache_create_failure", None),
    # net/netfilter/nf_conntrack_core.c: older with a period, newer with pr_fmt's doubled prefix
    ("nf_conntrack: table full, dropping packet.", "nf_conntrack_table_full", None),
    ("nf_conntrack: nf_conntrack: table full, dropping packet", "nf_conntrack_table_full", None),
    # net/core/dev.c netdev_wait_allrefs(_any)
    ("unregister_netdevice: waiting for lo to become free. Usage count = 2", "netdev_unregister_wait", None),
    ("unregister_netdevice: waiting for veth5a3b1c2@if4 to become free. Usage count = -1", "netdev_unregister_wait",
     None),
    # mm/oom_kill.c: 3.10, 4.x (shmem-rss), 5.x+ (the reason in front, and more fields)
    ("Killed process 18377 (java) total-vm:9187468kB, anon-rss:4123456kB, file-rss:1234kB", "oom_kill", None),
    ("Killed process 2531 (mysqld) total-vm:1307824kB, anon-rss:617032kB, file-rss:0kB, shmem-rss:0kB",
     "oom_kill", None),
    ("Memory cgroup out of memory: Killed process 4242 (node (server)) total-vm:1148292kB, anon-rss:260940kB, "
     "file-rss:32184kB, shmem-rss:0kB, UID:1000 pgtables:1348kB oom_score_adj:999", "oom_kill", None),
    ("Out of memory: Killed process 1301 (stress) total-vm:3152000kB, anon-rss:2929008kB, file-rss:0kB, "
     "shmem-rss:0kB, UID:0 pgtables:5804kB oom_score_adj:0", "oom_kill", None),
    # RHEL 6 (UID before the name), RHEL 7.9 (UID after it), mainline 2.6.32 (nothing after the name)
    ("Killed process 2592, UID 500, (java) total-vm:2783424kB, anon-rss:1037512kB, file-rss:296kB", "oom_kill", None),
    ("Killed process 31195 (java), UID 1000, total-vm:9187468kB, anon-rss:4123456kB, file-rss:0kB, shmem-rss:0kB",
     "oom_kill", None),
    ("Killed process 2592 (java)", "oom_kill", None),
    # mm/slub.c 6.12+: the CPU and its node first
    ("SLUB: Unable to allocate memory on CPU 7 (of node 1) on node -1, gfp=0x820(GFP_ATOMIC)",
     "slub_allocation_failure", None),
    # nf_conntrack_core.c outside the initial network namespace (2025+)
    ("nf_conntrack: nf_conntrack: table full in netns 4026532281, dropping packet", "nf_conntrack_table_full", None),
]

# Lines that look alike but must not be counted.
NOT_EVENTS = [
    "Out of memory: Kill process 18377 (java) score 912 or sacrifice child",  # precedes "Killed process"
    "Memory cgroup out of memory: Kill process 4242 (node) score 1999 or sacrifice child",
    "Kill process 18380 (java) sharing same memory",
    "Would have killed process 2592 (java). But continuing instead.",  # RHEL 6 vm.would_have_oomkilled
    "Tasks in /kubepods/pod1234 are going to be killed due to memory.oom.group set",
    "SLAB: Unable to allocate memory on node 0, gfp=0x280da(GFP_HIGHUSER_MOVABLE|__GFP_ZERO)",
    "SLUB: Unable to allocate memory from node 1",
    "SLUB: Allocating a useless per node structure in order to be able to continue",
    "oom_reaper: reaped process 1301 (stress), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
    "Task in /kubepods/burstable/pod1234 killed as a result of limit of /kubepods/burstable/pod1234",
    "vmalloc: allocation failure, allocated 61440 of 65536 bytes",
    "java: vmalloc: allocation failure: 4096 bytes, mode:0xcc0(GFP_KERNEL), nodemask=(null)",
    "page allocation failure test suite started",
    "  cache: kmalloc-256, object size: 256, buffer size: 256, default order: 1, min order: 0",
    "  node 0: slabs: 1234, objs: 39488, free: 0",
    "nf_conntrack: expectation table full",
    "nf_conntrack: falling back to vmalloc.",
    "nf_conntrack version 0.5.0 (65536 buckets, 262144 max)",
    "kmem_cache_create: Failed to create slab 'nf_conntrack'. Error -12",  # the SLAB_PANIC message panics instead
    "unregister_netdevice: waiting for eth0 to become free",
    "Mem-Info:",
    "Node 0 Normal: 34178*4kB (UEM) 20118*8kB (UEM) 412*16kB (UEM) 0*4096kB = 311640kB",
    "CPU: 1 PID: 18377 Comm: exe Not tainted 3.10.0-514.el7.x86_64 #1",
    "[<ffffffff811869a0>] warn_alloc_failed+0x110/0x180",
    "",
]


@pytest.mark.parametrize("line,expected", REAL_LINES)
def test_real_sample_lines(line: str, expected: KernelEvent) -> None:
    assert match_event(line) == expected
    # /dev/kmsg gives the text without the syslog prefix
    text = line.split("kernel:", 1)[-1].lstrip()
    text = text.split("] ", 1)[-1] if text.startswith("[") else text
    assert match_event(text) == expected


def test_sample_files_hold_the_expected_events() -> None:
    """Every line of the copied sample files, in order: exactly the events an operator would grep for."""
    incident = [match_event(line) for line in sample_lines("kernel-log.rhel7-nf_conn-slab-failure.txt")]
    assert [e for e in incident if e] == [
        KernelEvent("page_allocation_failure", "6"),
        KernelEvent("slab_cache_create_failure", None),
        KernelEvent("nf_conntrack_cache_failure", None),
    ]
    other = [match_event(line) for line in sample_lines("kernel-log.other-lines.txt")]
    assert other == [
        KernelEvent("page_allocation_failure", "4"),
        KernelEvent("slub_allocation_failure", None),
        KernelEvent("page_allocation_stall", "1"),
        KernelEvent("netdev_unregister_wait", None),
        None,  # dockerd's own log line, not a kernel message
    ]


@pytest.mark.parametrize("text,event,order", VARIANTS)
def test_variants_of_other_kernel_versions(text: str, event: str, order: str) -> None:
    assert match_event(text) == KernelEvent(event, order)


@pytest.mark.parametrize("text", NOT_EVENTS)
def test_similar_lines_are_not_events(text: str) -> None:
    assert match_event(text) is None


def test_every_event_has_a_real_or_variant_line() -> None:
    covered = {e.event for _, e in REAL_LINES} | {event for _, event, _ in VARIANTS}
    assert covered == set(EVENTS)


def test_orders_are_bounded() -> None:
    assert match_event(f"x: page allocation failure: order:{MAX_ORDER_LABEL}, mode:0x10c0d0") == \
        KernelEvent("page_allocation_failure", str(MAX_ORDER_LABEL))
    assert match_event("x: page allocation failure: order:4294967295, mode:0x10c0d0") == \
        KernelEvent("page_allocation_failure", "other")
    assert match_event("x: page allocation stalls for 1ms, order:21, mode:0x0") == \
        KernelEvent("page_allocation_stall", "other")


def test_table_is_described() -> None:
    assert EVENTS == ("page_allocation_failure", "page_allocation_stall", "slub_allocation_failure",
                      "slab_cache_create_failure", "nf_conntrack_cache_failure", "nf_conntrack_table_full",
                      "netdev_unregister_wait", "oom_kill")
    assert EVENTS_WITH_ORDER == ("page_allocation_failure", "page_allocation_stall")
    for pattern in PATTERNS:
        assert pattern.source.count(".c") >= 1, pattern.event  # names the kernel file it comes from


@given(st.text())
def test_any_text_matches_or_not_without_error(text: str) -> None:
    event = match_event(text)
    assert event is None or event.event in EVENTS
