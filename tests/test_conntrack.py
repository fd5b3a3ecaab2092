"""The conntrack collector: conntrack slab caches per kernel generation, and the table fill from its sysctls."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import (copy_proc, is_root, promtool_check_metrics, run_exporter, scrape_fixture,
                      scrape_fixture_ok, scrape_ok)
from metrics_text import collector_success, names, only_collectors, value
from kmem_exporter.parsers.slabinfo import is_conntrack_cache

ONLY_CONNTRACK = only_collectors("conntrack")


@pytest.mark.parametrize("name, expected", [
    ("nf_conntrack", True),  # newer kernels: a single cache
    ("nf_conntrack_ffff8803f0b7ba80", True),  # early RHEL 7: one per namespace, named after its address
    ("nf_conntrack_12", True),  # later: named after a counter
    ("nf_conntrack_expect", False),  # expectations, not connections
    ("nf_conntrack_expect_ffff8803f0b7ba80", False),
    ("nf_conntrack(1234:docker-abc)", False),  # a memory cgroup's copy is no extra namespace
    ("nf_conncount_rb", False),
    ("xt_hashlimit", False),
])
def test_is_conntrack_cache(name: str, expected: bool) -> None:
    assert is_conntrack_cache(name) is expected


@pytest.mark.parametrize("host, caches, active, total, entries, limit", [
    # The failing RHEL 7 node: 8 per-namespace caches; objects summed by hand from the sample's lines.
    ("rhel7-fragmented", 8, 25 + 1575 + 400 + 0 + 0 + 1350 + 375 + 925, 25 + 1625 + 400 + 0 + 0 + 1350 + 375 + 1000,
     1575, 65536),
    ("rhel7-healthy", 3, 125 + 825 + 0, 125 + 825 + 0, 825, 65536),
    # SLAB kernels: a Synology NAS with counter-named caches, and a 2.6.30 host whose nf_conntrack_expect is not one.
    ("synology-ds918", 3, 0, 0, None, None),
    ("slab-2.6.30", 1, 118, 210, None, None),
    ("live-6.18", 1, 0, 0, 0, 262144),
])
def test_conntrack_on_fixtures(host: str, caches: int, active: int, total: int, entries: int | None,
                               limit: int | None) -> None:
    out = scrape_fixture_ok(host, *ONLY_CONNTRACK)
    assert collector_success(out) == {"conntrack": 1}
    assert promtool_check_metrics(out) == ""
    assert value(out, "kmem_nf_conntrack_slab_caches") == caches
    assert value(out, "kmem_nf_conntrack_slab_objects_active") == active
    assert value(out, "kmem_nf_conntrack_slab_objects") == total
    if entries is None:  # conntrack's sysctls are not part of this tree: not an error, just absent
        assert "kmem_nf_conntrack_entries" not in names(out)
        assert "kmem_nf_conntrack_entries_limit" not in names(out)
    else:
        assert value(out, "kmem_nf_conntrack_entries") == entries
        assert value(out, "kmem_nf_conntrack_entries_limit") == limit


def test_memcg_copies_are_not_counted() -> None:
    out = scrape_fixture("slab-memcg", *ONLY_CONNTRACK).stdout
    assert value(out, "kmem_nf_conntrack_slab_caches") == 1
    assert value(out, "kmem_nf_conntrack_slab_objects") == 200


def test_bad_sysctl_fails_the_collector_with_the_path(tmp_path: Path) -> None:
    proc = copy_proc("rhel7-fragmented", tmp_path)
    (proc / "sys" / "net" / "netfilter" / "nf_conntrack_count").write_text("lots\n")
    result = run_exporter("scrape", f"--path.procfs={proc}", *only_collectors("conntrack", "slabinfo"))
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"conntrack": 0, "slabinfo": 1}
    assert f"{proc}/sys/net/netfilter/nf_conntrack_count: malformed: expected a single integer" in result.stderr


@pytest.mark.live
def test_live_host() -> None:
    assert is_root(), "the live conntrack test needs root (/proc/slabinfo is mode 0400)"
    out = scrape_ok(*ONLY_CONNTRACK)
    assert promtool_check_metrics(out) == ""
    # Counted independently: the lines of /proc/slabinfo whose name is exactly nf_conntrack (this is a 6.18 kernel).
    lines = [line.split() for line in Path("/proc/slabinfo").read_text().splitlines()[2:]]
    assert value(out, "kmem_nf_conntrack_slab_caches") == sum(f[0] == "nf_conntrack" for f in lines) == 1
    limit = int(Path("/proc/sys/net/netfilter/nf_conntrack_max").read_text())
    assert value(out, "kmem_nf_conntrack_entries_limit") == limit
