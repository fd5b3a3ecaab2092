"""The /proc/buddyinfo parser on real and constructed files, and on random and truncated input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FIXTURES
from kmem_exporter.parsers import ParseError
from kmem_exporter.parsers.buddyinfo import ZoneFreeBlocks, parse_buddyinfo
from fuzzing import cut_and_mutated, parse_or_none


def parse_tree(host: str) -> list[ZoneFreeBlocks]:
    return parse_buddyinfo((FIXTURES / host / "proc" / "buddyinfo").read_text())


def test_live_machine_file_with_trailing_spaces() -> None:
    text = (FIXTURES / "live-6.18" / "proc" / "buddyinfo").read_text()
    assert all(line.endswith(" ") for line in text.splitlines())  # the kernel prints "%6lu " per order
    assert parse_buddyinfo(text) == [
        ZoneFreeBlocks("0", "DMA", (0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 3)),
        ZoneFreeBlocks("0", "DMA32", (1, 2, 4, 2, 5, 4, 3, 3, 4, 2, 752)),
        ZoneFreeBlocks("0", "Normal", (49, 12, 2, 55, 5, 9, 21, 25, 12, 1, 83)),
    ]


def test_rhel7_fragmented() -> None:
    zones = parse_tree("rhel7-fragmented")
    assert [(z.node, z.zone) for z in zones] == [("0", "DMA"), ("0", "DMA32"), ("0", "Normal")]
    normal = zones[2]
    assert normal.free_blocks == (40153, 12774, 302, 17, 0, 0, 0, 0, 0, 0, 0)
    assert normal.largest_free_order == 3
    assert normal.free_pages == 40153 + 12774 * 2 + 302 * 4 + 17 * 8 == 67045
    assert sum(z.free_pages for z in zones) == 101637


def test_highmem_zone() -> None:
    zones = parse_tree("arm-highmem")
    assert [z.zone for z in zones] == ["DMA", "Normal", "HighMem"]
    assert zones[2].free_blocks == (0, 2542, 1859, 253, 961, 3568, 560, 19, 1, 0, 0)
    assert zones[2].largest_free_order == 8


def test_two_and_four_numa_nodes_and_movable_zone() -> None:
    numa2 = parse_tree("numa2-debian9")
    assert [(z.node, z.zone) for z in numa2] == [("0", "DMA"), ("0", "DMA32"), ("0", "Normal"), ("1", "Normal")]
    assert numa2[3].free_blocks == (200000, 70000, 15000, 2500, 400, 60, 0, 0, 0, 0, 0)
    numa4 = parse_tree("numa4")
    assert [(z.node, z.zone) for z in numa4] == [
        ("0", "DMA"), ("0", "DMA32"), ("0", "Normal"), ("1", "Normal"),
        ("2", "Normal"), ("2", "Movable"), ("3", "Normal"), ("3", "Movable"),
    ]
    assert numa4[5].free_blocks[10] == 6890


@pytest.mark.parametrize("host, orders, last_zone_blocks", [
    ("ppc64-64k-9orders", 9, (3012, 1455, 702, 330, 121, 60, 22, 9, 180)),
    ("rhel7-healthy", 11, (108, 1708, 952, 1064, 957, 690, 285, 145, 12, 1, 0)),
    ("arm64-16k-12orders", 12, (9011, 4020, 1733, 802, 401, 190, 88, 40, 21, 10, 6, 301)),
    ("arm64-64k-14orders", 14, (3120, 1411, 640, 301, 155, 71, 30, 17, 9, 5, 2, 1, 0, 3)),
])
def test_order_columns_come_from_the_file(host: str, orders: int, last_zone_blocks: tuple[int, ...]) -> None:
    zones = parse_tree(host)
    assert {len(z.free_blocks) for z in zones} == {orders}
    assert zones[-1].free_blocks == last_zone_blocks


def test_empty_zone_has_no_largest_order() -> None:
    zone = parse_buddyinfo("Node 0, zone   Normal      0      0      0 \n")[0]
    assert zone.largest_free_order == -1 and zone.free_pages == 0


@pytest.mark.parametrize("host, message", [
    ("broken-buddyinfo-empty", "no zones found"),
    ("broken-buddyinfo-truncated", "different numbers of orders: [3, 11]"),
    ("broken-buddyinfo-nonnumeric", "line 2: expected 'Node N, zone NAME COUNT...'"),
])
def test_broken_files(host: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_tree(host)
    assert message in str(err.value)


SAMPLES = [(FIXTURES / host / "proc" / "buddyinfo").read_text()
           for host in ("live-6.18", "rhel7-fragmented", "numa4", "arm64-64k-14orders")]


@settings(max_examples=300)
@given(st.text())
def test_fuzz_random_text(text: str) -> None:
    parse_or_none(parse_buddyinfo, text)


@settings(max_examples=300)
@given(st.sampled_from(SAMPLES), st.integers(min_value=0), st.integers(min_value=0), st.text(max_size=5))
def test_fuzz_truncated_and_mutated(sample: str, cut: int, at: int, insert: str) -> None:
    for text in cut_and_mutated(sample, cut, at, insert):
        parse_or_none(parse_buddyinfo, text)


def test_number_too_long_for_the_kernel_is_a_parse_error() -> None:
    # Python's int() refuses strings of more than 4300 digits with a plain ValueError; no kernel count has 21.
    with pytest.raises(ParseError):
        parse_buddyinfo("Node 0, zone   Normal " + "9" * 5000 + "\n")
