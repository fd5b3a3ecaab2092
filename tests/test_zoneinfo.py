"""The zoneinfo parser and collector: 3.10, 4.9 and 6.x layouts, unpopulated zones, bad input, the real exporter."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FIXTURES, promtool_check_metrics, scrape_fixture, scrape_fixture_ok
from kmem_exporter.parsers import ParseError
from kmem_exporter.parsers.buddyinfo import parse_buddyinfo
from kmem_exporter.parsers.zoneinfo import ZoneInfo, parse_zoneinfo
from fuzzing import cut_and_mutated, parse_or_none
from metrics_text import collector_success, only_collectors, series_values, value

ONLY = only_collectors("buddyinfo", "zoneinfo")
PAGE = os.sysconf("SC_PAGE_SIZE")


def parse_tree(host: str) -> list[ZoneInfo]:
    return parse_zoneinfo((FIXTURES / host / "proc" / "zoneinfo").read_text())


def test_live_machine_file() -> None:
    zones = parse_tree("live-6.18")
    assert [(z.node, z.zone, z.populated) for z in zones] == [
        ("0", "DMA", True), ("0", "DMA32", True), ("0", "Normal", True), ("0", "Movable", False),
        ("0", "Device", False),
    ]
    assert zones[0] == ZoneInfo("0", "DMA", free_pages=3840, min_pages=57, low_pages=71, high_pages=85,
                                managed_pages=3840, present_pages=3998, spanned_pages=4095, boost_pages=0)
    assert zones[2] == ZoneInfo("0", "Normal", free_pages=249025, min_pages=5355, low_pages=6693, high_pages=8031,
                                managed_pages=360448, present_pages=5505024, spanned_pages=5505024, boost_pages=0)
    # the per-CPU "high:" lines of the pagesets and the per-node stats are not zone fields
    assert zones[3].high_pages == 32 and zones[3].managed_pages == 0


def test_rhel7_layout() -> None:
    zones = parse_tree("rhel7-fragmented")
    assert zones[2] == ZoneInfo("0", "Normal", free_pages=67045, min_pages=13737, low_pages=17171,
                                high_pages=20605, managed_pages=3348651, present_pages=3407872,
                                spanned_pages=3407872, boost_pages=None)


@pytest.mark.parametrize("host", ["rhel7-fragmented", "rhel7-healthy", "numa2-debian9", "numa4", "arm-highmem",
                                  "ppc64-64k-9orders", "arm64-16k-12orders", "arm64-64k-14orders"])
def test_free_pages_agree_with_buddyinfo(host: str) -> None:
    buddy = {(b.node, b.zone): b.free_pages
             for b in parse_buddyinfo((FIXTURES / host / "proc" / "buddyinfo").read_text())}
    populated = {(z.node, z.zone): z.free_pages for z in parse_tree(host) if z.populated}
    assert populated == buddy


def test_numa_nodes_highmem_and_movable() -> None:
    numa4 = {(z.node, z.zone): z for z in parse_tree("numa4")}
    assert len(numa4) == 14
    assert numa4[("2", "Movable")].managed_pages == 7340032 and numa4[("2", "Movable")].populated
    assert not numa4[("1", "Movable")].populated
    numa2 = parse_tree("numa2-debian9")
    assert [(z.node, z.zone) for z in numa2] == [("0", "DMA"), ("0", "DMA32"), ("0", "Normal"), ("1", "Normal")]
    assert numa2[3].boost_pages is None and numa2[3].managed_pages == 33030070
    highmem = parse_tree("arm-highmem")[2]
    assert (highmem.zone, highmem.free_pages, highmem.min_pages, highmem.managed_pages) == (
        "HighMem", 182624, 128, 327680)


ZONE = "Node 0, zone   Normal\n  pages free     100\n        min      10\n        low      12\n        high     14\n"


def test_before_3_8_there_is_no_managed_line() -> None:
    [zone] = parse_zoneinfo(ZONE + "        scanned  0\n        spanned  4096\n        present  4096\n")
    assert (zone.managed_pages, zone.present_pages, zone.populated) == (None, 4096, True)


@pytest.mark.parametrize("text, message", [
    ("", "no zones found"),
    ("  pages free     100\n", "data before the first"),
    ("Node 0, zone   Normal\n", "no 'pages free' line"),
    ("Node 0, zone   Normal\n  pages free     100\n        min      10\n", "no low, high watermark"),
    (ZONE + ZONE, "listed twice"),
    (ZONE + "Node 0, zo", "expected 'Node N, zone NAME'"),
    (ZONE.replace("min      10\n", "min      10\n  pages free     3\n"), "second 'pages free' line"),
    (ZONE.replace("100", "9" * 5000), "line 2: pages free does not fit in 64 bits"),
])
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_zoneinfo(text)
    assert message in str(err.value)


SAMPLES = [(FIXTURES / h / "proc" / "zoneinfo").read_text() for h in ("live-6.18", "rhel7-fragmented", "numa2-debian9")]


@settings(max_examples=300)
@given(st.text())
def test_fuzz_random_text(text: str) -> None:
    parse_or_none(parse_zoneinfo, text)


@settings(max_examples=300)
@given(st.sampled_from(SAMPLES), st.integers(min_value=0), st.integers(min_value=0), st.text(max_size=5))
def test_fuzz_truncated_and_mutated(sample: str, cut: int, at: int, insert: str) -> None:
    for text in cut_and_mutated(sample, cut, at, insert):
        parse_or_none(parse_zoneinfo, text)


# The collector, through the real exporter.

def test_collector_on_live_tree() -> None:
    out = scrape_fixture_ok("live-6.18", *ONLY)
    assert collector_success(out) == {"buddyinfo": 1, "zoneinfo": 1}
    assert value(out, "kmem_zone_free_bytes", node="0", zone="Normal") == 249025 * PAGE
    assert value(out, "kmem_zone_watermark_bytes", node="0", zone="Normal", watermark="min") == 5355 * PAGE
    assert value(out, "kmem_zone_watermark_bytes", node="0", zone="Normal", watermark="low") == 6693 * PAGE
    assert value(out, "kmem_zone_watermark_bytes", node="0", zone="Normal", watermark="high") == 8031 * PAGE
    assert value(out, "kmem_zone_managed_bytes", node="0", zone="DMA32") == 772917 * PAGE
    zones = {dict(labels)["zone"] for name, labels in series_values(out) if name.startswith("kmem_zone_")}
    assert zones == {"DMA", "DMA32", "Normal"}  # Movable and Device hold no memory on this machine
    assert promtool_check_metrics(out) == ""


@pytest.mark.parametrize("host, node, zone, free_pages", [
    ("rhel7-fragmented", "0", "Normal", 67045),
    ("numa4", "3", "Movable", 7090083),
    ("arm-highmem", "0", "HighMem", 182624),
])
def test_collector_on_constructed_trees(host: str, node: str, zone: str, free_pages: int) -> None:
    out = scrape_fixture_ok(host, *ONLY)
    assert collector_success(out) == {"buddyinfo": 1, "zoneinfo": 1}
    assert value(out, "kmem_zone_free_bytes", node=node, zone=zone) == free_pages * PAGE
    assert promtool_check_metrics(out) == ""


def test_collector_fails_alone_on_a_truncated_file() -> None:
    result = scrape_fixture("broken-fragmentation-files", *ONLY)
    assert result.returncode == 1
    assert collector_success(result.stdout) == {"buddyinfo": 1, "zoneinfo": 0}
    path = FIXTURES / "broken-fragmentation-files" / "proc" / "zoneinfo"
    assert f"{path}: malformed: node 0 zone Normal: no min, low, high watermark (truncated file?)" in result.stderr
    assert promtool_check_metrics(result.stdout) == ""
