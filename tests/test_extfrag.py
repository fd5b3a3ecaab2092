"""Fragmentation indices: the debugfs parser, the computation from buddyinfo (checked against the kernel's own
output, from fixtures and live on this machine), and the collector through the real exporter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import (FIXTURES, PROJECT, promtool_check_metrics, require_tool, scrape_fixture, wait_for,
                      scrape_fixture_ok, scrape_ok)
from kmem_exporter.parsers import ParseError
from kmem_exporter.parsers.buddyinfo import ZoneFreeBlocks, parse_buddyinfo
from kmem_exporter.parsers.extfrag import (ContigPageInfo, ZoneIndex, compute_indices, fill_contig_page_info,
                                      format_value, fragmentation_index, parse_index_file, render_index_file,
                                      unusable_free_index)
from fuzzing import cut_and_mutated, parse_or_none
from metrics_text import collector_success, only_collectors, series_values, value

ONLY = only_collectors("buddyinfo", "extfrag")
LIVE = FIXTURES / "live-6.18"


def read(path: Path) -> str:
    return path.read_text()


# Parsing what the kernel printed.

def test_parse_live_debugfs_files() -> None:
    extfrag = parse_index_file(read(LIVE / "sys/kernel/debug/extfrag/extfrag_index"))
    assert [(z.node, z.zone) for z in extfrag] == [("0", "DMA"), ("0", "DMA32"), ("0", "Normal")]
    assert all(z.values == (-1000,) * 11 for z in extfrag)
    unusable = parse_index_file(read(LIVE / "sys/kernel/debug/extfrag/unusable_index"))
    assert unusable[0].values == (0, 0, 0, 0, 0, 0, 0, 0, 0, 66, 200)
    assert unusable[2].values == (0, 0, 0, 0, 5, 6, 9, 23, 57, 90, 95)
    assert unusable[2].ratios()[10] == 0.095


def test_parse_the_3_10_sample_without_padding() -> None:
    zones = parse_index_file(read(FIXTURES / "rhel7-fragmented/sys/kernel/debug/extfrag/extfrag_index"))
    assert zones[1] == ZoneIndex("0", "DMA32", (-1000,) * 6 + (970, 985, 993, 997, 999))


@pytest.mark.parametrize("text, message", [
    ("", "no zones found"),
    ("Node 0, zone   Normal -1.000 0.5\n", "expected 'Node N, zone NAME X.XXX...'"),
    ("Node 0, zone   Normal -1.000 0.931\nNode 0, zone      DMA -1.000\n", "different numbers of orders"),
    ("Node 0, zone   Normal -1.000\nNode 0, zone   Normal -1.000\n", "listed twice"),
    ("Node 0, zone   Normal " + "9" * 5000 + ".000\n", "expected"),
])
def test_parse_malformed(text: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_index_file(text)
    assert message in str(err.value)


@settings(max_examples=300)
@given(st.text())
def test_fuzz_random_text(text: str) -> None:
    parse_or_none(parse_index_file, text)


@settings(max_examples=300)
@given(st.sampled_from([read(LIVE / "sys/kernel/debug/extfrag/extfrag_index"),
                        read(LIVE / "sys/kernel/debug/extfrag/unusable_index")]),
       st.integers(min_value=0), st.integers(min_value=0), st.text(max_size=5))
def test_fuzz_truncated_and_mutated(sample: str, cut: int, at: int, insert: str) -> None:
    for text in cut_and_mutated(sample, cut, at, insert):
        parse_or_none(parse_index_file, text)


# The kernel's arithmetic.

def test_hand_worked_example() -> None:
    """rhel7-fragmented Normal: 40153 12774 302 17 0 ... free blocks."""
    blocks = (40153, 12774, 302, 17, 0, 0, 0, 0, 0, 0, 0)
    info = fill_contig_page_info(blocks, 4)
    assert info == ContigPageInfo(free_pages=67045, free_blocks_total=53246, free_blocks_suitable=0)
    # 1000 - (1000 + 67045 * 1000 // 16) // 53246 = 1000 - (1000 + 4190312) // 53246 = 1000 - 78
    assert fragmentation_index(4, info) == 922
    info1 = fill_contig_page_info(blocks, 1)
    assert info1.free_blocks_suitable == 12774 + 302 * 2 + 17 * 4 == 13446
    # (67045 - 13446 * 2) * 1000 // 67045 = 40153000 // 67045
    assert unusable_free_index(1, info1) == 598
    assert fragmentation_index(3, fill_contig_page_info(blocks, 3)) == -1000


def test_empty_zone() -> None:
    info = fill_contig_page_info((0, 0, 0), 1)
    assert (fragmentation_index(1, info), unusable_free_index(1, info)) == (0, 1000)


def test_the_kernels_negative_quirk_is_reproduced() -> None:
    """One free order-9 block, request order 10: 1000 - (1000 + 512000 // 1024) // 1 = -500, which the kernel
    prints with %2d.%03d of -500 / 1000 and -500 % 1000 (C truncation) as ' 0.-500'."""
    blocks = (0,) * 9 + (1, 0)
    assert fragmentation_index(10, fill_contig_page_info(blocks, 10)) == -500
    assert format_value(-500, 2) == " 0.-500"
    assert format_value(-1000, 2) == "-1.000" and format_value(931, 2) == " 0.931" and format_value(5) == "0.005"
    text = render_index_file(compute_indices([ZoneFreeBlocks("0", "Normal", blocks)])[0], 2)
    assert text.endswith(" 0.-500 \n")
    assert parse_index_file(text)[0].values[10] == -500


def test_computed_equals_the_kernels_output_on_live_fixture() -> None:
    """live-6.18's buddyinfo and debugfs files were read at the same moment (buddyinfo unchanged around them)."""
    extfrag, unusable = compute_indices(parse_buddyinfo(read(LIVE / "proc/buddyinfo")))
    assert render_index_file(extfrag, 2) == read(LIVE / "sys/kernel/debug/extfrag/extfrag_index")
    assert render_index_file(unusable, 1) == read(LIVE / "sys/kernel/debug/extfrag/unusable_index")
    assert unusable == parse_index_file(read(LIVE / "sys/kernel/debug/extfrag/unusable_index"))


def test_computed_equals_the_debian9_sample() -> None:
    """numa2-debian9's buddyinfo was constructed so that the formula gives the real 4.9 sample's values."""
    extfrag, _ = compute_indices(parse_buddyinfo(read(FIXTURES / "numa2-debian9/proc/buddyinfo")))
    sample = read(FIXTURES / "numa2-debian9/sys/kernel/debug/extfrag/extfrag_index")
    assert extfrag == parse_index_file(sample)
    rendered = [line.rstrip() for line in render_index_file(extfrag, 1).splitlines()]
    assert rendered == [line.rstrip() for line in sample.splitlines()]


# Live on this machine.

def consistent_read(debugfs: Path) -> tuple[str, str, str]:
    """buddyinfo, extfrag_index and unusable_index, read again until buddyinfo is the same before and after."""

    def attempt() -> tuple[str, str, str] | None:
        before = read(Path("/proc/buddyinfo"))
        extfrag = read(debugfs / "extfrag/extfrag_index")
        unusable = read(debugfs / "extfrag/unusable_index")
        return (before, extfrag, unusable) if read(Path("/proc/buddyinfo")) == before else None

    return wait_for("/proc/buddyinfo to hold still while the indices are read", attempt)


@pytest.mark.live
def test_computed_equals_the_kernels_output_live(debugfs: Path) -> None:
    buddyinfo, extfrag_text, unusable_text = consistent_read(debugfs)
    extfrag, unusable = compute_indices(parse_buddyinfo(buddyinfo))
    assert render_index_file(extfrag, 2) == extfrag_text
    assert render_index_file(unusable, 1) == unusable_text


@pytest.mark.live
def test_collector_live_reads_debugfs(debugfs: Path) -> None:
    out = scrape_ok(*ONLY)
    assert value(out, "kmem_extfrag_source_info", source="debugfs") == 1
    zones = [(z.node, z.zone) for z in parse_buddyinfo(read(Path("/proc/buddyinfo")))]
    exported = {(dict(labels)["node"], dict(labels)["zone"])
                for name, labels in series_values(out) if name == "kmem_extfrag_index"}
    assert exported == set(zones)
    assert promtool_check_metrics(out) == ""


@pytest.mark.live
def test_collector_live_without_root_computes(debugfs: Path) -> None:
    """debugfs is 0700: as nobody the collector falls back to computing from /proc/buddyinfo."""
    result = subprocess.run(
        [require_tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
         "kmem_exporter", "scrape", *ONLY], capture_output=True, text=True, timeout=60, cwd=PROJECT)
    assert result.returncode == 0, result.stderr
    assert collector_success(result.stdout) == {"buddyinfo": 1, "extfrag": 1}
    assert value(result.stdout, "kmem_extfrag_source_info", source="computed") == 1
    assert promtool_check_metrics(result.stdout) == ""


@pytest.mark.live
def test_collector_live_as_nobody_with_cap_dac_read_search_reads_debugfs(debugfs: Path) -> None:
    """The capability, not the uid, is what lets the exporter into the root-only debugfs directory."""
    caps = "-all,+dac_read_search"
    result = subprocess.run(
        [require_tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", f"--inh-caps={caps}",
         f"--ambient-caps={caps}", f"--bounding-set={caps}", "--", sys.executable, "-m", "kmem_exporter", "scrape",
         *ONLY], capture_output=True, text=True, timeout=60, cwd=PROJECT)
    assert result.returncode == 0, result.stderr
    assert value(result.stdout, "kmem_extfrag_source_info", source="debugfs") == 1
    assert ("kmem_extfrag_source_info", (("source", "computed"),)) not in series_values(result.stdout)


# The collector on fixture trees.

def test_collector_on_live_tree_reads_debugfs() -> None:
    out = scrape_fixture_ok("live-6.18", *ONLY)
    assert value(out, "kmem_extfrag_source_info", source="debugfs") == 1
    assert value(out, "kmem_extfrag_index", node="0", zone="Normal", order="10") == -1
    assert value(out, "kmem_unusable_index", node="0", zone="Normal", order="10") == 0.095
    assert value(out, "kmem_unusable_index", node="0", zone="DMA", order="9") == 0.066
    assert len([k for k in series_values(out) if k[0] == "kmem_unusable_index"]) == 33
    assert promtool_check_metrics(out) == ""


def test_collector_computes_when_debugfs_is_incomplete() -> None:
    """rhel7-fragmented has only the sample's extfrag_index, read at another moment: both indices are computed
    from buddyinfo instead, so they agree with each other and with the free block counts."""
    out = scrape_fixture_ok("rhel7-fragmented", *ONLY)
    assert value(out, "kmem_extfrag_source_info", source="computed") == 1
    assert ("kmem_extfrag_source_info", (("source", "debugfs"),)) not in series_values(out)
    assert value(out, "kmem_extfrag_index", node="0", zone="Normal", order="4") == 0.922  # the file says -1.000
    assert value(out, "kmem_extfrag_index", node="0", zone="Normal", order="3") == -1
    assert value(out, "kmem_extfrag_index", node="0", zone="DMA32", order="5") == 0.947
    assert value(out, "kmem_unusable_index", node="0", zone="Normal", order="1") == 0.598
    assert promtool_check_metrics(out) == ""


@pytest.mark.parametrize("host, series", [
    ("numa2-debian9", {("1", "Normal", "6"): 0.977, ("0", "Normal", "6"): 0.98}),
    # node 2 Normal: 4766 free blocks, 8777 free pages, none of order 7:
    # 1000 - (1000 + 8777000 // 128) // 4766 = 1000 - 69570 // 4766 = 986
    ("numa4", {("3", "Movable", "10"): -1, ("2", "Normal", "7"): 0.986}),
    # HighMem: 9763 free blocks, 182624 free pages, none of order 9:
    # 1000 - (1000 + 182624000 // 512) // 9763 = 1000 - 357687 // 9763 = 964
    ("arm-highmem", {("0", "HighMem", "9"): 0.964, ("0", "HighMem", "8"): -1}),
    ("arm64-64k-14orders", {("0", "Normal", "13"): -1, ("0", "Normal", "12"): -1}),
])
def test_collector_on_constructed_trees(host: str, series: dict[tuple[str, str, str], float]) -> None:
    out = scrape_fixture_ok(host, *ONLY)
    assert collector_success(out) == {"buddyinfo": 1, "extfrag": 1}
    for (node, zone, order), expected in series.items():
        assert value(out, "kmem_extfrag_index", node=node, zone=zone, order=order) == expected
    assert promtool_check_metrics(out) == ""


def test_collector_fails_on_a_truncated_debugfs_file() -> None:
    result = scrape_fixture("broken-fragmentation-files", *ONLY)
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"buddyinfo": 1, "extfrag": 0}
    path = FIXTURES / "broken-fragmentation-files/sys/kernel/debug/extfrag/unusable_index"
    assert f"{path}: malformed: zones list different numbers of orders: [3, 11] (truncated line?)" in result.stderr
    assert promtool_check_metrics(result.stdout) == ""


def test_collector_fails_when_debugfs_cannot_be_read_for_another_reason(tmp_path: Path) -> None:
    """Only an absent or forbidden file means "compute instead"; any other read error fails the collector."""
    debugfs = tmp_path / "debug"
    shutil.copytree(LIVE / "sys/kernel/debug", debugfs)
    (debugfs / "extfrag/unusable_index").unlink()
    (debugfs / "extfrag/unusable_index").mkdir()
    result = scrape_fixture("live-6.18", f"--path.debugfs={debugfs}", *ONLY)
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"buddyinfo": 1, "extfrag": 0}
    assert f"{debugfs / 'extfrag/unusable_index'}: EISDIR: Is a directory" in result.stderr


def test_collector_computes_when_a_debugfs_file_is_absent(tmp_path: Path) -> None:
    debugfs = tmp_path / "debug"
    shutil.copytree(LIVE / "sys/kernel/debug", debugfs)
    (debugfs / "extfrag/extfrag_index").unlink()
    out = scrape_fixture_ok("live-6.18", f"--path.debugfs={debugfs}", *ONLY)
    assert value(out, "kmem_extfrag_source_info", source="computed") == 1
    assert value(out, "kmem_unusable_index", node="0", zone="Normal", order="10") == 0.095  # same as the file


@pytest.mark.parametrize("host, reason", [
    ("broken-buddyinfo-empty", "no zones found (empty file)"),
    ("broken-buddyinfo-truncated", "zones list different numbers of orders: [3, 11] (truncated line?)"),
    ("broken-buddyinfo-nonnumeric", "line 2: expected 'Node N, zone NAME COUNT...'"),
])
def test_computed_indices_fail_with_buddyinfo(host: str, reason: str) -> None:
    result = scrape_fixture(host, *only_collectors("buddyinfo", "extfrag", "pagetypeinfo", "zoneinfo"))
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"buddyinfo": 0, "extfrag": 0, "pagetypeinfo": 1, "zoneinfo": 1}
    path = FIXTURES / host / "proc" / "buddyinfo"
    assert f"collector=extfrag failed: {path}: malformed: {reason}" in result.stderr
    assert f"collector=buddyinfo failed: {path}: malformed: {reason}" in result.stderr
    assert promtool_check_metrics(result.stdout) == ""
