"""The fixture trees as wholes: a tree that stands for a whole host scrapes cleanly with every collector, and each
`broken-*` tree fails exactly the collectors it is meant to break (tests/fixtures/README.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from conftest import FIXTURES, scrape_fixture
from metrics_text import all_collectors, collector_success, only_collectors, value
from kmem_exporter.collectors import COLLECTORS
from kmem_exporter.collectors.netns import NetnsWalk, walk_network_namespaces
from kmem_exporter.parsers.netns import mounted_network_namespaces, parse_namespace_link

# A tree stands for a whole host when it has what every kind of collector starts from.
WHOLE_HOST_FILES = ("proc/buddyinfo", "proc/slabinfo", "proc/cgroups", "proc/sys/kernel/osrelease")


@dataclass(frozen=True)
class Host:
    walk: NetnsWalk  # network namespaces, processes read, processes unreadable
    conntrack_caches: int


COMPLETE_HOSTS = {
    # 8 nf_conntrack caches for 2 live network namespaces: 6 leaked
    "rhel7-fragmented": Host(NetnsWalk(2, 6, 0), 8),
    "rhel7-healthy": Host(NetnsWalk(3, 8, 0), 3),
    "memcg-near-exhausted": Host(NetnsWalk(2, 6, 0), 8),  # a copy of rhel7-fragmented
    "live-6.18": Host(NetnsWalk(1, 4, 0), 1),
    "memcg-dying-6.18": Host(NetnsWalk(1, 4, 0), 1),  # a copy of live-6.18
    "cgroup2-6.18": Host(NetnsWalk(1, 4, 0), 1),  # a copy of live-6.18
}


@dataclass(frozen=True)
class Broken:
    enabled: tuple[str, ...]  # the collectors whose input the tree holds
    failing: dict[str, str]  # collector -> the path in the tree and the reason it logs


FRAGMENTATION = ("buddyinfo", "pagetypeinfo", "extfrag", "zoneinfo", "kernel_log")


def buddyinfo_broken(reason: str) -> Broken:
    """buddyinfo fails, and so does extfrag, which computes its indices from buddyinfo when debugfs has none."""
    message = f"proc/buddyinfo: malformed: {reason}"
    return Broken(FRAGMENTATION, {"buddyinfo": message, "extfrag": message})


BROKEN = {
    "broken-buddyinfo-empty": buddyinfo_broken("no zones found (empty file)"),
    "broken-buddyinfo-nonnumeric": buddyinfo_broken("line 2: expected 'Node N, zone NAME COUNT...'"),
    "broken-buddyinfo-truncated": buddyinfo_broken("zones list different numbers of orders: [3, 11]"),
    "broken-fragmentation-files": Broken(FRAGMENTATION, {
        "pagetypeinfo": "proc/pagetypeinfo: malformed: line 16: 1 counts for 11 orders",
        "zoneinfo": "proc/zoneinfo: malformed: node 0 zone Normal: no min, low, high watermark",
        "extfrag": "sys/kernel/debug/extfrag/unusable_index: malformed: zones list different numbers of orders",
    }),
    "broken-memcg-truncated": Broken(tuple(COLLECTORS), {
        "memcg": "proc/cgroups: malformed: line 5: expected 'NAME HIERARCHY NUM_CGROUPS ENABLED'",
    }),
    "broken-netns-mountinfo": Broken(("netns", "kernel_log"), {
        "netns": "proc/1/mountinfo: malformed: line 7: expected 'ID PARENT MAJ:MIN ROOT MOUNTPOINT",
    }),
    "broken-slabinfo-truncated": Broken(("buddyinfo", "extfrag", "slabinfo", "conntrack", "kernel_log"), {
        "slabinfo": "proc/slabinfo: malformed: line 101: expected 'NAME 5 numbers",
        "conntrack": "proc/slabinfo: malformed: line 101: expected 'NAME 5 numbers",
    }),
    "broken-vmstat-truncated": Broken(("buddyinfo", "extfrag", "vmstat", "sysctl", "kernel", "kernel_log"), {
        "vmstat": "proc/vmstat: malformed: line 96: expected 'NAME VALUE', got 'compact_st'",
    }),
}


def test_the_list_of_complete_hosts_is_every_tree_that_stands_for_a_whole_host() -> None:
    whole = {tree.name for tree in FIXTURES.iterdir()
             if all((tree / f).is_file() for f in WHOLE_HOST_FILES) and not tree.name.startswith("broken-")}
    assert whole == set(COMPLETE_HOSTS)


def test_every_broken_tree_is_listed() -> None:
    assert {tree.name for tree in FIXTURES.glob("broken-*")} == set(BROKEN)


@pytest.mark.parametrize("host", sorted(COMPLETE_HOSTS))
def test_a_complete_host_scrapes_cleanly_with_every_collector(host: str) -> None:
    result = scrape_fixture(host, *all_collectors())
    assert result.returncode == 0, result.stderr
    assert collector_success(result.stdout) == {name: 1 for name in COLLECTORS}
    assert " failed: " not in result.stderr
    expected = COMPLETE_HOSTS[host]
    assert value(result.stdout, "kmem_network_namespaces") == expected.walk.namespaces
    assert value(result.stdout, "kmem_nf_conntrack_slab_caches") == expected.conntrack_caches


@pytest.mark.parametrize("host", sorted(COMPLETE_HOSTS))
def test_the_process_table_of_a_complete_host(host: str) -> None:
    """Each process holds only its namespace links and mount table, all in the kernel's formats; the walk finds the
    host's network namespaces."""
    proc = FIXTURES / host / "proc"
    pids = [entry for entry in proc.iterdir() if entry.name.isdigit()]
    assert len(pids) == COMPLETE_HOSTS[host].walk.processes
    for pid in pids:
        assert sorted(str(p.relative_to(pid)) for p in pid.rglob("*")) == ["mountinfo", "ns", "ns/mnt", "ns/net"]
        parse_namespace_link(os.readlink(pid / "ns" / "net"), "net")
        parse_namespace_link(os.readlink(pid / "ns" / "mnt"), "mnt")
        mounted_network_namespaces((pid / "mountinfo").read_text())
    assert walk_network_namespaces(proc, 1 << 20) == COMPLETE_HOSTS[host].walk


@pytest.mark.parametrize("tree", sorted(BROKEN))
def test_a_broken_tree_fails_exactly_the_collectors_it_breaks(tree: str) -> None:
    broken = BROKEN[tree]
    result = scrape_fixture(tree, *only_collectors(*broken.enabled))
    assert result.returncode == 1
    assert collector_success(result.stdout) == {name: int(name not in broken.failing) for name in broken.enabled}
    for name, message in broken.failing.items():
        assert result.stderr.count(f"collector={name} failed: ") == 1, result.stderr
        assert f"collector={name} failed: {FIXTURES / tree}/{message}" in result.stderr, result.stderr
    assert result.stderr.count(" failed: ") == len(broken.failing), result.stderr
