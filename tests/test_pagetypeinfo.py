"""The pagetypeinfo parser and collector: exact values on fixture trees, bad input, the real exporter."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import (FIXTURES, PROJECT, is_root, promtool_check_metrics, require_tool, scrape_fixture,
                      scrape_fixture_ok)
from kmem_exporter.parsers import ParseError
from kmem_exporter.parsers.buddyinfo import parse_buddyinfo
from kmem_exporter.parsers.pagetypeinfo import Pagetypeinfo, parse_pagetypeinfo
from fuzzing import cut_and_mutated, parse_or_none
from metrics_text import collector_success, only_collectors, series_values, value

ONLY = only_collectors("buddyinfo", "pagetypeinfo")


def parse_tree(host: str) -> Pagetypeinfo:
    return parse_pagetypeinfo((FIXTURES / host / "proc" / "pagetypeinfo").read_text())


def free_of(info: Pagetypeinfo, node: str, zone: str, mtype: str) -> tuple[int, ...]:
    [row] = [r for r in info.free if (r.node, r.zone, r.migratetype) == (node, zone, mtype)]
    return row.free_blocks


def blocks_of(info: Pagetypeinfo, node: str, zone: str) -> dict[str, int]:
    [row] = [r for r in info.pageblocks if (r.node, r.zone) == (node, zone)]
    return dict(row.pageblocks)


def test_live_machine_file() -> None:
    info = parse_tree("live-6.18")
    assert (info.pageblock_order, info.pages_per_block) == (9, 512)
    assert [r.migratetype for r in info.free[:5]] == ["Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate"]
    assert len(info.free) == 15
    assert free_of(info, "0", "Normal", "Movable") == (3091, 1906, 995, 532, 251, 119, 31, 14, 8, 10, 195)
    assert free_of(info, "0", "Normal", "Reclaimable") == (30, 12, 0, 9, 8, 0, 6, 7, 0, 0, 0)
    assert free_of(info, "0", "DMA", "Unmovable") == (0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0)
    assert not any(any(r.capped) for r in info.free)
    assert blocks_of(info, "0", "Normal") == {"Unmovable": 55, "Movable": 614, "Reclaimable": 35, "HighAtomic": 0,
                                              "Isolate": 0}
    assert blocks_of(info, "0", "DMA32")["Movable"] == 1528


@pytest.mark.parametrize("host", ["rhel7-fragmented", "rhel7-healthy"])
def test_rhel7_layout_agrees_with_buddyinfo(host: str) -> None:
    info = parse_tree(host)
    assert info.pageblock_order == 9
    assert [r.migratetype for r in info.free[:6]] == ["Unmovable", "Reclaimable", "Movable", "Reserve", "CMA",
                                                      "Isolate"]
    for zone in parse_buddyinfo((FIXTURES / host / "proc" / "buddyinfo").read_text()):
        rows = [r.free_blocks for r in info.free if (r.node, r.zone) == (zone.node, zone.zone)]
        assert tuple(map(sum, zip(*rows))) == zone.free_blocks


def test_rhel7_fragmented_values() -> None:
    info = parse_tree("rhel7-fragmented")
    assert free_of(info, "0", "Normal", "Movable") == (33729, 10732, 254, 15, 0, 0, 0, 0, 0, 0, 0)
    assert blocks_of(info, "0", "Normal") == {"Unmovable": 399, "Reclaimable": 133, "Movable": 6122, "Reserve": 2,
                                              "CMA": 0, "Isolate": 0}
    assert blocks_of(info, "0", "DMA")["Reserve"] == 1


def test_capped_counts() -> None:
    info = parse_tree("capped-pagetypeinfo")
    [row] = [r for r in info.free if (r.zone, r.migratetype) == ("Normal", "Reclaimable")]
    assert row.free_blocks[:3] == (100000, 52386, 3524)
    assert row.capped[:3] == (True, False, False)
    [movable] = [r for r in info.free if (r.zone, r.migratetype) == ("Normal", "Movable")]
    assert movable.free_blocks[:4] == (100000, 100000, 74022, 7561)
    assert movable.capped[:3] == (True, True, False)


def test_block_repeats_per_numa_node() -> None:
    info = parse_tree("numa4")
    assert sorted({r.node for r in info.free}) == ["0", "1", "2", "3"]
    assert blocks_of(info, "2", "Movable") == {"Unmovable": 0, "Movable": 14336, "Reclaimable": 0, "HighAtomic": 0,
                                               "Isolate": 0}
    assert free_of(info, "3", "Movable", "Movable")[10] == 6890
    numa2 = parse_tree("numa2-debian9")
    assert [r.migratetype for r in numa2.free[:6]] == ["Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA",
                                                       "Isolate"]
    assert [(b.node, b.zone) for b in numa2.pageblocks] == [("0", "DMA"), ("0", "DMA32"), ("0", "Normal"),
                                                            ("1", "Normal")]


@pytest.mark.parametrize("host, orders, pageblock_order", [
    ("ppc64-64k-9orders", 9, 8), ("arm-highmem", 11, 9), ("arm64-16k-12orders", 12, 11),
    ("arm64-64k-14orders", 14, 13),
])
def test_order_columns_from_the_header(host: str, orders: int, pageblock_order: int) -> None:
    info = parse_tree(host)
    assert {len(r.free_blocks) for r in info.free} == {orders}
    assert (info.pageblock_order, info.pages_per_block) == (pageblock_order, 1 << pageblock_order)


HEADER = ("Page block order: 9\nPages per block:  512\n\n"
          "Free pages count per migrate type at order       0      1 \n")
ROW = "Node    0, zone   Normal, type      Movable      5      6 \n"
TABLE = "\nNumber of blocks type     Unmovable      Movable \nNode 0, zone   Normal            3            4 \n"


def test_mixed_blocks_table_is_skipped() -> None:
    mixed = "\nNumber of mixed blocks    Unmovable      Movable \nNode 0, zone   Normal            1            0 \n"
    info = parse_pagetypeinfo(HEADER + ROW + TABLE + mixed)
    assert blocks_of(info, "0", "Normal") == {"Unmovable": 3, "Movable": 4}


@pytest.mark.parametrize("text, message", [
    ("", "no free counts found"),
    (HEADER + ROW, "no 'Number of blocks type' table"),
    (ROW + TABLE, "before the 'Free pages count' header"),
    (HEADER + ROW + ROW + TABLE, "listed twice"),
    (HEADER + "Node    0, zone   Normal, type      Movable      5 \n" + TABLE, "1 counts for 2 orders"),
    (HEADER + ROW + TABLE.replace("     4 ", "     x "), "unexpected line"),
    (HEADER + ROW + "\nNumber of blocks type     Unmovable      Movable \nNode 0, zone   Normal            3 \n",
     "1 counts for 2 migrate types"),
    (HEADER.replace("order: 9", "order: 10") + ROW + TABLE + HEADER, "expected one 'Page block order'"),
    (HEADER.replace("0      1", "1      2") + ROW + TABLE, "order columns are not 0..N"),
])
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_pagetypeinfo(text)
    assert message in str(err.value)


SAMPLES = [(FIXTURES / h / "proc" / "pagetypeinfo").read_text() for h in ("live-6.18", "capped-pagetypeinfo", "numa4")]


@settings(max_examples=300)
@given(st.text())
def test_fuzz_random_text(text: str) -> None:
    parse_or_none(parse_pagetypeinfo, text)


@settings(max_examples=300)
@given(st.sampled_from(SAMPLES), st.integers(min_value=0), st.integers(min_value=0), st.text(max_size=5))
def test_fuzz_truncated_and_mutated(sample: str, cut: int, at: int, insert: str) -> None:
    for text in cut_and_mutated(sample, cut, at, insert):
        parse_or_none(parse_pagetypeinfo, text)


def test_number_too_long_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_pagetypeinfo(HEADER + ROW.replace("     6 ", " " + "9" * 5000 + " ") + TABLE)


# The collector, through the real exporter.

def test_collector_on_live_tree() -> None:
    out = scrape_fixture_ok("live-6.18", *ONLY)
    assert collector_success(out) == {"buddyinfo": 1, "pagetypeinfo": 1}
    assert value(out, "kmem_pagetype_free_blocks", node="0", zone="Normal", migratetype="Movable", order="10") == 195
    assert value(out, "kmem_pagetype_pageblocks", node="0", zone="Normal", migratetype="Reclaimable") == 35
    assert value(out, "kmem_pageblock_order") == 9
    free = [k for k in series_values(out) if k[0] == "kmem_pagetype_free_blocks"]
    assert len(free) == 3 * 5 * 11
    assert promtool_check_metrics(out) == ""


def test_collector_exports_capped_counts_as_the_cap() -> None:
    out = scrape_fixture_ok("capped-pagetypeinfo", *ONLY)
    assert value(out, "kmem_pagetype_free_blocks", node="0", zone="Normal", migratetype="Movable", order="0") == 100000
    assert value(out, "kmem_pagetype_free_blocks", node="0", zone="Normal", migratetype="Movable", order="2") == 74022
    assert "exported as 100000 and means at least that many" in out
    assert promtool_check_metrics(out) == ""


@pytest.mark.parametrize("host", ["rhel7-fragmented", "numa2-debian9", "numa4", "arm-highmem", "ppc64-64k-9orders",
                                  "arm64-16k-12orders", "arm64-64k-14orders"])
def test_collector_succeeds_on_good_trees(host: str) -> None:
    out = scrape_fixture_ok(host, *ONLY)
    assert collector_success(out) == {"buddyinfo": 1, "pagetypeinfo": 1}
    assert promtool_check_metrics(out) == ""


def test_collector_fails_alone_on_a_truncated_file() -> None:
    result = scrape_fixture("broken-fragmentation-files", *ONLY)
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"buddyinfo": 1, "pagetypeinfo": 0}
    path = FIXTURES / "broken-fragmentation-files" / "proc" / "pagetypeinfo"
    assert f"{path}: malformed: line 16: 1 counts for 11 orders (truncated line?)" in result.stderr
    assert promtool_check_metrics(result.stdout) == ""


@pytest.mark.live
def test_collector_without_root_says_why() -> None:
    """/proc/pagetypeinfo is 0400 since Linux 5.4: run the exporter as nobody on this machine's /proc."""
    assert is_root(), "this test drops privileges to nobody and must start as root (run `make test` as root)"
    result = subprocess.run(
        [require_tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
         "kmem_exporter", "scrape", *ONLY], capture_output=True, text=True, timeout=60, cwd=PROJECT)
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"buddyinfo": 1, "pagetypeinfo": 0}
    assert "/proc/pagetypeinfo: permission denied: readable by root only since Linux 5.4" in result.stderr
