"""The slabinfo parser, the folding of per-instance caches, and the slabinfo collector on fixtures and on this host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import (FIXTURES, PROJECT, is_root, promtool_check_metrics, require_tool, run_exporter, scrape_fixture,
                      scrape_fixture_ok, scrape_ok)
from fuzzing import parse_or_none
from metrics_text import collector_success, only_collectors, series_values, types, value
from kmem_exporter.parsers import ParseError
from kmem_exporter.parsers.slabinfo import SlabCache, SlabFamily, family_name, fold_caches, parse_slabinfo

ONLY_SLABINFO = [*only_collectors("slabinfo"), "--collector.slabinfo.fields=.*"]
PAGE = os.sysconf("SC_PAGE_SIZE")
HEADER = ("slabinfo - version: 2.1\n# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> "
          ": tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n")
SLAB_METRICS = ("kmem_slab_objects_active", "kmem_slab_objects", "kmem_slab_object_size_bytes",
                "kmem_slab_objects_per_slab", "kmem_slab_pages_per_slab", "kmem_slab_slabs_active", "kmem_slab_slabs",
                "kmem_slab_bytes", "kmem_slab_caches")


def slabinfo(host: str) -> str:
    return (FIXTURES / host / "proc" / "slabinfo").read_text()


def conntrack(address: str, active: int, total: int, slabs: int) -> SlabCache:
    """A cache line of the RHEL 7 samples: 320-byte objects, 25 per 2-page slab, every slab active."""
    return SlabCache(f"nf_conntrack_{address}", active, total, 320, 25, 2, slabs, slabs)


# ---------------------------------------------------------------------------------------------------- the parser

def test_parse_rhel7_fragmented_sample() -> None:
    assert parse_slabinfo(slabinfo("rhel7-fragmented")) == [
        conntrack("ffff8803f0b7ba80", 25, 25, 1),
        conntrack("ffff8802e47f3a80", 1575, 1625, 65),
        conntrack("ffff8803eef64e00", 400, 400, 16),
        conntrack("ffff8803eef61380", 0, 0, 0),
        conntrack("ffff880360a04e00", 0, 0, 0),
        conntrack("ffff8803eef63a80", 1350, 1350, 54),
        conntrack("ffff8803ff2bce00", 375, 375, 15),
        conntrack("ffff8802e47f6180", 925, 1000, 40),
    ]


def test_parse_rhel7_healthy_sample() -> None:
    assert parse_slabinfo(slabinfo("rhel7-healthy")) == [
        conntrack("ffff8801fda48000", 125, 125, 5),
        conntrack("ffff8801fda4ce00", 825, 825, 33),
        conntrack("ffff8800a4afa700", 0, 0, 0),
    ]


def test_parse_live_slub_file() -> None:
    caches = parse_slabinfo(slabinfo("live-6.18"))
    by_name = {c.name: c for c in caches}
    assert len(caches) == len(by_name) == 235  # 237 lines, 2 of them header
    assert caches[0] == SlabCache("btrfs_delayed_node", 0, 0, 312, 13, 1, 0, 0)
    assert caches[-1] == SlabCache("kmem_cache", 240, 240, 256, 16, 1, 15, 15)
    # A name longer than the 17-character column leaves a single space before the numbers.
    assert by_name["request_sock_subflow_v6"] == SlabCache("request_sock_subflow_v6", 0, 0, 392, 20, 2, 0, 0)
    assert by_name["dentry"] == SlabCache("dentry", 42741, 42777, 192, 21, 1, 2037, 2037)
    assert by_name["UDPv6"] == SlabCache("UDPv6", 44, 44, 1472, 22, 8, 2, 2)
    assert by_name["nf_conntrack"] == SlabCache("nf_conntrack", 0, 0, 256, 16, 1, 0, 0)
    # Sum of num_slabs x pagesperslab over the file, as `awk 'NR>2{s+=$14*$6} END{print s}'` computes it.
    assert sum(c.pages() for c in caches) == 20143


def test_parse_slab_allocator_file() -> None:
    """SLAB prints its real tunables and nonzero sharedavail; the numbers still land in the same fields."""
    caches = parse_slabinfo(slabinfo("slab-2.6.30"))
    by_name = {c.name: c for c in caches}
    assert len(caches) == 33
    assert by_name["nf_conntrack"] == SlabCache("nf_conntrack", 118, 210, 256, 15, 1, 14, 14)
    assert by_name["scsi_cmd_cache"] == SlabCache("scsi_cmd_cache", 138, 300, 256, 15, 1, 15, 20)
    assert by_name["buffer_head"] == SlabCache("buffer_head", 1086394, 1086394, 104, 37, 1, 29362, 29362)
    assert by_name["size-4194304(DMA)"] == SlabCache("size-4194304(DMA)", 0, 0, 4194304, 1, 1024, 0, 0)
    assert by_name["size-65536"] == SlabCache("size-65536", 2, 2, 65536, 1, 16, 2, 2)
    assert by_name["cifs_request"] == SlabCache("cifs_request", 4, 4, 16512, 1, 8, 4, 4)


def test_parse_synology_slab_file() -> None:
    caches = parse_slabinfo(slabinfo("synology-ds918"))
    assert [c.name for c in caches] == [
        "nf_conntrack_4", "nf_conntrack_3", "nf_conntrack_2", "au_finfo", "au_icntnr", "au_dinfo", "cifs_request",
        "cifs_inode_cache", "udf_inode_cache", "isofs_inode_cache", "tcm_loop_cmd_cache"]
    assert caches[0] == SlabCache("nf_conntrack_4", 0, 0, 280, 14, 1, 0, 0)
    assert caches[7] == SlabCache("cifs_inode_cache", 361, 365, 808, 5, 1, 73, 73)


def test_parse_keeps_duplicate_names() -> None:
    caches = [c for c in parse_slabinfo(slabinfo("slab-duplicates")) if c.name == "mlx5_fs_ftes"]
    assert caches == [SlabCache("mlx5_fs_ftes", 44, 44, 736, 44, 8, 1, 1),
                      SlabCache("mlx5_fs_ftes", 396, 396, 736, 44, 8, 9, 9)]


def test_parse_memcg_child_caches() -> None:
    caches = parse_slabinfo(slabinfo("slab-memcg"))
    assert caches[0] == SlabCache("dentry(1236:docker-0123456789ab.scope)", 21, 21, 192, 21, 1, 1, 1)
    assert caches[3] == SlabCache("kmalloc-64(1234:docker-abc.scope)", 128, 128, 64, 64, 1, 2, 2)
    assert len(caches) == 13


def test_parse_statistics_kernel() -> None:
    """CONFIG_DEBUG_SLAB kernels add globalstat and cpustat sections; they are ignored."""
    text = ("slabinfo - version: 2.1 (statistics)\n"
            "dentry 94813 107840 192 20 1 : tunables 120 60 8 : slabdata 5392 5392 204 : globalstat 812345 107840 "
            "6001 20 0 4 0 0 0 : cpustat 700000 12000 650000 9000\n")
    assert parse_slabinfo(text) == [SlabCache("dentry", 94813, 107840, 192, 20, 1, 5392, 5392)]


def test_parse_name_with_spaces() -> None:
    """The name is everything before the fifteen fixed fields, so even a name with a space survives."""
    text = HEADER + "my cache  1 2 64 64 1 : tunables 0 0 0 : slabdata 1 1 0\n"
    assert parse_slabinfo(text) == [SlabCache("my cache", 1, 2, 64, 64, 1, 1, 1)]


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("slabinfo - version: 2.0\nkmem_cache 80 80 256 15 1 : tunables 120 60 8 : slabdata 6 6 0\n",
     "version 2.0 is not supported"),
    ("slabinfo - version: 1.1\nkmem_cache 59 78 100 2 2 1\n", "version 1.1 is not supported"),
    ("slabinfo - version: 1.1 (SMP)\nkmem_cache 59 78 100 2 2 1 : 252 126\n", "expected 'slabinfo - version: 2.1'"),
    ("kmem_cache 240 240 256 16 1 : tunables 0 0 0 : slabdata 15 15 0\n", "line 1: expected 'slabinfo"),
    (HEADER, "no slab caches listed"),
    (HEADER + "kmem_cache 240 240 256 16 1 : tunables 0 0 0 : slabdata 15 15\n", "line 3: expected ': slabdata'"),
    (HEADER + "kmem_cache 240 240 256 16 1 : tunables 0 0\n", "line 3: expected ': slabdata'"),
    (HEADER + "kmem_cache 240 240\n", "line 3: expected 'NAME 5 numbers"),
    (HEADER + "240 240 256 16 1 : tunables 0 0 0 : slabdata 15 15 0\n", "line 3: expected 'NAME 5 numbers"),
    (HEADER + "kmem_cache 240 -1 256 16 1 : tunables 0 0 0 : slabdata 15 15 0\n", "num_objs is not"),
    (HEADER + "kmem_cache 240 240 256 16 1 : tunables 0 0 0 : slabdata 15 15 0 junk\n", "unexpected 'junk'"),
    (HEADER + "kmem_cache 240 240 256 16 1 : tunables 0 0 0 : slabdata 15 ١ 0\n", "num_slabs is not"),
])
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_slabinfo(text)


def test_parse_truncated_fixture() -> None:
    with pytest.raises(ParseError, match=r"line 101: expected 'NAME 5 numbers"):
        parse_slabinfo(slabinfo("broken-slabinfo-truncated"))


@given(st.text())
def test_random_text_raises_only_parse_error(text: str) -> None:
    parse_or_none(parse_slabinfo, text)


@given(st.text(alphabet=" \n:0123456789abcdef_-()tunablesdt", max_size=400))
def test_slabinfo_like_text_raises_only_parse_error(body: str) -> None:
    parse_or_none(parse_slabinfo, HEADER + body)


@given(st.sampled_from(["live-6.18", "slab-2.6.30", "rhel7-fragmented", "slab-memcg"]), st.data())
def test_truncated_real_files_raise_only_parse_error(host: str, data: st.DataObject) -> None:
    text = slabinfo(host)
    caches = parse_or_none(parse_slabinfo, text[:data.draw(st.integers(min_value=0, max_value=len(text)))])
    assert caches is None or len(caches) <= len(parse_slabinfo(text))


# ---------------------------------------------------------------------------------------------------- folding

@pytest.mark.parametrize("name, family", [
    ("nf_conntrack_ffff8803f0b7ba80", "nf_conntrack"),  # early RHEL 7: the namespace's address
    ("nf_conntrack_c0a8b000", "nf_conntrack"),  # the same on a 32-bit kernel
    ("nf_conntrack_12", "nf_conntrack"),  # later 3.10: a counter
    ("dentry(1234:docker-abc)", "dentry"),  # a memory cgroup's copy
    ("kmalloc-64(1234:docker-abc.scope)", "kmalloc-64"),
    ("nf_conntrack_ffff8803f0b7ba80(12:docker-abc)", "nf_conntrack"),
])
def test_family_name_folds_per_instance_names(name: str, family: str) -> None:
    assert family_name(name) == family


@pytest.mark.parametrize("name", [
    "kmalloc-64", "dma-kmalloc-512", "kmalloc-cg-8k", "kmalloc-rcl-96", "UDPv6", "TCPv6", "ext4_inode_cache", "PING",
    "bio-312", "erofs_pcluster-257", "msg_msg-8k", "dmaengine-unmap-2", "ip4-frags", "jbd2_1k", "nf_conntrack",
    "nf_conntrack_expect", "size-64(DMA)", "size-4194304(DMA)", "pid_2", "pid_namespace", "raid5/md0", ":0000064",
    "xfs_deadbeef", "f2fs_xattr_entry-8:1", "sgpool-128", "9p-fcall-cache",
])
def test_family_name_keeps_ordinary_names(name: str) -> None:
    assert family_name(name) == name


def test_no_cache_of_this_host_is_folded() -> None:
    assert [c.name for c in parse_slabinfo(slabinfo("live-6.18")) if family_name(c.name) != c.name] == []


def test_fold_conntrack_caches_into_one_series() -> None:
    folded = fold_caches(parse_slabinfo(slabinfo("rhel7-fragmented")))
    # Sums by hand from the sample: 25+1575+400+0+0+1350+375+925, 25+1625+400+0+0+1350+375+1000, 1+65+16+0+0+54+15+40.
    assert folded == [SlabFamily("nf_conntrack", 8, 4650, 4775, 320, 25, 2, 191, 191, 382)]


def test_fold_off_keeps_every_cache() -> None:
    folded = fold_caches(parse_slabinfo(slabinfo("rhel7-fragmented")), fold_families=False)
    assert [f.name for f in folded] == sorted(c.name for c in parse_slabinfo(slabinfo("rhel7-fragmented")))
    assert all(f.caches == 1 for f in folded)


def test_fold_memcg_children_into_their_root_cache() -> None:
    by_name = {f.name: f for f in fold_caches(parse_slabinfo(slabinfo("slab-memcg")))}
    assert sorted(by_name) == ["dentry", "inode_cache", "kmalloc-64", "kmem_cache", "nf_conntrack",
                               "nf_conntrack_expect", "pid", "pid_2"]
    # dentry: the root cache and three containers' copies.
    assert by_name["dentry"] == SlabFamily("dentry", 4, 20160 + 84 + 42 + 21, 20160 + 84 + 42 + 21, 192, 21, 1,
                                           960 + 4 + 2 + 1, 960 + 4 + 2 + 1, 967)
    assert by_name["inode_cache"] == SlabFamily("inode_cache", 2, 1326, 1326, 600, 13, 2, 102, 102, 204)
    assert by_name["kmalloc-64"].caches == 2
    assert by_name["pid"].caches == by_name["pid_2"].caches == 1


def test_duplicate_names_are_summed_even_without_folding() -> None:
    for fold in (True, False):
        families = fold_caches(parse_slabinfo(slabinfo("slab-duplicates")), fold_families=fold)
        assert len({f.name for f in families}) == len(families)
        mlx5 = next(f for f in families if f.name == "mlx5_fs_ftes")
        assert mlx5 == SlabFamily("mlx5_fs_ftes", 2, 440, 440, 736, 44, 8, 10, 10, 80)


def test_folded_geometry_is_the_largest_and_bytes_use_each_caches_own() -> None:
    text = HEADER + ("foo_1  10 16 256 16 1 : tunables 0 0 0 : slabdata 1 1 0\n"
                     "foo_2   3  8 512  8 2 : tunables 0 0 0 : slabdata 1 1 0\n"
                     "foo     0  0 128 32 1 : tunables 0 0 0 : slabdata 0 0 0\n")
    assert fold_caches(parse_slabinfo(text)) == [SlabFamily("foo", 3, 13, 24, 512, 32, 2, 2, 2, 1 * 1 + 1 * 2)]
    # The same lines in another order give the same result.
    lines = text.splitlines(keepends=True)
    assert fold_caches(parse_slabinfo("".join(lines[:2] + lines[:1:-1]))) == fold_caches(parse_slabinfo(text))


# ---------------------------------------------------------------------------------------------------- the collector

@pytest.mark.parametrize("host", ["rhel7-fragmented", "rhel7-healthy", "live-6.18", "slab-2.6.30", "synology-ds918",
                                  "slab-duplicates", "slab-memcg"])
def test_collector_exposition_is_clean(host: str) -> None:
    out = scrape_fixture_ok(host, *ONLY_SLABINFO)
    assert collector_success(out) == {"slabinfo": 1}
    assert promtool_check_metrics(out) == ""
    exposed = types(out)
    assert {name: exposed.get(name) for name in SLAB_METRICS} == {name: "gauge" for name in SLAB_METRICS}


def test_collector_on_fragmented_sample() -> None:
    out = scrape_fixture("rhel7-fragmented", *ONLY_SLABINFO).stdout
    cache = {"cache": "nf_conntrack"}
    assert value(out, "kmem_slab_caches", **cache) == 8
    assert value(out, "kmem_slab_objects_active", **cache) == 4650
    assert value(out, "kmem_slab_objects", **cache) == 4775
    assert value(out, "kmem_slab_object_size_bytes", **cache) == 320
    assert value(out, "kmem_slab_objects_per_slab", **cache) == 25
    assert value(out, "kmem_slab_pages_per_slab", **cache) == 2
    assert value(out, "kmem_slab_slabs_active", **cache) == 191
    assert value(out, "kmem_slab_slabs", **cache) == 191
    assert value(out, "kmem_slab_bytes", **cache) == 382 * PAGE
    assert {dict(labels)["cache"] for (name, labels) in series_values(out) if name.startswith("kmem_slab_")} == {
        "nf_conntrack"}


def test_collector_without_folding() -> None:
    out = scrape_fixture("rhel7-fragmented", *ONLY_SLABINFO, "--no-collector.slabinfo.fold-caches").stdout
    caches = {dict(labels)["cache"] for (name, labels) in series_values(out) if name == "kmem_slab_caches"}
    assert len(caches) == 8 and "nf_conntrack_ffff8802e47f3a80" in caches
    assert value(out, "kmem_slab_bytes", cache="nf_conntrack_ffff8802e47f3a80") == 65 * 2 * PAGE


def test_collector_duplicates_give_one_series() -> None:
    out = scrape_fixture_ok("slab-duplicates", *ONLY_SLABINFO)
    assert value(out, "kmem_slab_caches", cache="mlx5_fs_ftes") == 2
    assert value(out, "kmem_slab_objects", cache="mlx5_fs_ftes") == 440
    assert value(out, "kmem_slab_bytes", cache="mlx5_fs_ftes") == 10 * 8 * PAGE


def test_collector_memcg_children() -> None:
    out = scrape_fixture("slab-memcg", *ONLY_SLABINFO).stdout
    assert value(out, "kmem_slab_caches", cache="dentry") == 4
    assert value(out, "kmem_slab_objects_active", cache="dentry") == 20307
    unfolded = scrape_fixture("slab-memcg", *ONLY_SLABINFO, "--no-collector.slabinfo.fold-caches").stdout
    assert value(unfolded, "kmem_slab_objects_active", cache="dentry(1234:docker-abc.scope)") == 84


def test_series_stay_bounded_with_thousands_of_per_instance_caches(tmp_path: Path) -> None:
    lines = slabinfo("live-6.18").splitlines()
    for i in range(3000):
        lines.append(f"dentry({1000 + i}:docker-{i:012x}.scope) 21 21 192 21 1 : tunables 0 0 0 : slabdata 1 1 0")
        lines.append(f"nf_conntrack_ffff88{i:010x} 25 25 320 25 2 : tunables 0 0 0 : slabdata 1 1 0")
    (tmp_path / "slabinfo").write_text("\n".join(lines) + "\n")
    out = scrape_ok(f"--path.procfs={tmp_path}", *ONLY_SLABINFO)
    caches = {dict(labels)["cache"] for (name, labels) in series_values(out) if name == "kmem_slab_caches"}
    assert len(caches) == 235  # the host's own caches, no more
    assert value(out, "kmem_slab_caches", cache="dentry") == 3001
    assert value(out, "kmem_slab_caches", cache="nf_conntrack") == 3001
    assert value(out, "kmem_slab_objects_active", cache="dentry") == 42741 + 3000 * 21


def test_include_and_exclude_match_the_exported_name_fully() -> None:
    def caches(*flags: str) -> set[str]:
        out = scrape_fixture("slab-memcg", *ONLY_SLABINFO, *flags).stdout
        return {dict(labels)["cache"] for (name, labels) in series_values(out) if name == "kmem_slab_caches"}

    assert caches("--collector.slabinfo.include=dentry|pid") == {"dentry", "pid"}  # full match: not pid_2
    assert caches("--collector.slabinfo.include=nf_conntrack.*", "--collector.slabinfo.exclude=.*_expect") == {
        "nf_conntrack"}
    assert caches("--collector.slabinfo.exclude=.*") == set()
    # Matching applies to the exported name: a folded family is selected by its family name, and without folding
    # by the cache's own name.
    assert caches("--collector.slabinfo.include=dentry\\(.*") == set()
    assert caches("--collector.slabinfo.include=dentry\\(.*", "--no-collector.slabinfo.fold-caches") == {
        "dentry(1234:docker-abc.scope)", "dentry(1235:docker-def.scope)", "dentry(1236:docker-0123456789ab.scope)"}


def test_invalid_regex_is_refused_at_start() -> None:
    result = run_exporter("scrape", "--collector.slabinfo.include=(", *ONLY_SLABINFO)
    assert result.returncode == 2
    assert "collector.slabinfo.include" in result.stderr and "invalid regular expression" in result.stderr


def test_truncated_file_fails_only_the_collectors_that_read_it() -> None:
    result = scrape_fixture("broken-slabinfo-truncated", *only_collectors("slabinfo", "conntrack", "buddyinfo"))
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"slabinfo": 0, "conntrack": 0, "buddyinfo": 1}
    assert "broken-slabinfo-truncated/proc/slabinfo: malformed: line 101" in result.stderr
    assert promtool_check_metrics(result.stdout) == ""


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    result = run_exporter("scrape", f"--path.procfs={tmp_path}", *ONLY_SLABINFO)
    assert result.returncode == 1
    assert f"{tmp_path}/slabinfo: file not found" in result.stderr


# ------------------------------------------------------------------------------------------------ live and privileges

@pytest.mark.live
def test_live_host() -> None:
    assert is_root(), "the live slabinfo tests need root (/proc/slabinfo is mode 0400)"
    def caches() -> set[str]:
        return {line.split()[0] for line in Path("/proc/slabinfo").read_text().splitlines()[2:]}

    before = caches()
    out = scrape_ok(*ONLY_SLABINFO)
    after = caches()
    assert promtool_check_metrics(out) == ""
    # Every cache the kernel lists is exported (this kernel has no per-instance caches to fold): those listed before
    # and after the scrape at least, and none that was in neither (other work on this machine may make or destroy a
    # cache meanwhile).
    exported = {dict(labels)["cache"] for (name, labels) in series_values(out) if name == "kmem_slab_caches"}
    assert before & after <= exported <= before | after, (exported ^ before, exported ^ after)
    assert value(out, "kmem_slab_pages_per_slab", cache="kmem_cache") >= 1


def _as_nobody(*extra: str) -> list[str]:
    setpriv = require_tool("setpriv")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *extra]


@pytest.mark.live
def test_unprivileged_user_gets_a_message_that_says_how_to_grant_access() -> None:
    assert is_root(), "this test drops from root to nobody"
    command = [sys.executable, "-m", "kmem_exporter", "scrape", *ONLY_SLABINFO]
    denied = subprocess.run(_as_nobody() + command, capture_output=True, text=True, timeout=60, cwd=PROJECT)
    assert denied.returncode == 1
    assert collector_success(denied.stdout) == {"slabinfo": 0}
    assert "/proc/slabinfo: permission denied (run as root, or grant CAP_DAC_READ_SEARCH in a container)" in \
        denied.stderr
    # The capability the message names is enough.
    granted = subprocess.run(_as_nobody("--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search") + command,
                             capture_output=True, text=True, timeout=60, cwd=PROJECT)
    assert granted.returncode == 0, granted.stderr
    assert collector_success(granted.stdout) == {"slabinfo": 1}


def test_default_fields_are_what_dashboards_alerts_and_report_read() -> None:
    out = scrape_fixture_ok("rhel7-fragmented", *only_collectors("slabinfo"))
    assert set(types(out)) == {"kmem_slab_bytes", "kmem_slab_caches", "kmem_collector_success",
                               "kmem_collector_duration_seconds", "kmem_exporter_build_info"}
    assert value(out, "kmem_slab_caches", cache="nf_conntrack") == 8


def test_fields_select_columns_by_whole_name() -> None:
    out = scrape_fixture_ok("rhel7-fragmented", *only_collectors("slabinfo"),
                            "--collector.slabinfo.fields=objects|slabs")
    assert {name for name in types(out) if name.startswith("kmem_slab_")} == {"kmem_slab_objects", "kmem_slab_slabs"}
    result = scrape_fixture("rhel7-fragmented", *only_collectors("slabinfo"), "--collector.slabinfo.fields=(")
    assert result.returncode == 2 and "collector.slabinfo.fields" in result.stderr
