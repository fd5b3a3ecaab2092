"""The kernel's fragmentation indices: parsed from debugfs, or computed from /proc/buddyinfo.

`<debugfs>/extfrag/extfrag_index` and `<debugfs>/extfrag/unusable_index` print, per node and zone, one value per
order with three decimals:

    Node 0, zone   Normal -1.000 -1.000 -1.000 -1.000  0.931  0.965 ...

Values are kept here as the kernel computes them: integers in thousandths (-1000 .. 1000).

- extfrag index (`__fragmentation_index` in mm/vmstat.c): -1000 when a block of the order is free now (the allocation
  would succeed); otherwise towards 0 the allocation fails for lack of memory (reclaim helps), towards 1000 for
  fragmentation (compaction helps). 0 when the zone has no free block at all.
- unusable free index (`unusable_free_index`): the share of free memory in blocks smaller than the order; 1000 when
  nothing is free.

debugfs is root-only and often not mounted, but both indices are pure functions of the free block counts in
/proc/buddyinfo, so `compute_indices` reproduces them with the kernel's own integer arithmetic (unsigned division,
truncating) and `render_index_file` prints them the way the kernel does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, NamedTuple

from kmem_exporter.parsers import ParseError
from kmem_exporter.parsers.buddyinfo import ZoneFreeBlocks
from kmem_exporter.parsers.zone_rows import parse_zone_rows, zone_row_pattern

_ROW = zone_row_pattern(r"-?\d{1,4}\.-?\d{3}")
_VALUE = re.compile(r"(-?\d{1,4})\.(-?\d{3})", re.ASCII)


@dataclass(frozen=True)
class ZoneIndex:
    node: str
    zone: str
    values: tuple[int, ...]  # thousandths, index = order

    def ratios(self) -> tuple[float, ...]:
        return tuple(v / 1000 for v in self.values)


class ContigPageInfo(NamedTuple):
    free_pages: int
    free_blocks_total: int
    free_blocks_suitable: int


def _parse_value(token: str, what: str = "value") -> int:
    # The kernel prints `index / 1000` and `index % 1000` with C semantics (both truncate towards zero), so the
    # sign can sit on either part: -1000 -> "-1.000", -500 -> "0.-500". Both parts are signed (`%d.%03d`).
    match = _VALUE.fullmatch(token)
    if match is None:
        raise ParseError(f"{what}: not an index value: {token[:40]!r}")
    return int(match.group(1)) * 1000 + int(match.group(2))


def parse_index_file(text: str) -> list[ZoneIndex]:
    """Parse extfrag_index or unusable_index (same layout)."""
    return [ZoneIndex(node, zone, values) for node, zone, values in parse_zone_rows(text, _ROW, "X.XXX...",
                                                                                    _parse_value)]


def fill_contig_page_info(free_blocks: tuple[int, ...], suitable_order: int) -> ContigPageInfo:
    """Free pages, free blocks, and free blocks big enough for `suitable_order` (counted in blocks of that order)."""
    free_pages = total = suitable = 0
    for order, blocks in enumerate(free_blocks):
        total += blocks
        free_pages += blocks << order
        if order >= suitable_order:
            suitable += blocks << (order - suitable_order)
    return ContigPageInfo(free_pages, total, suitable)


def fragmentation_index(order: int, info: ContigPageInfo) -> int:
    if not info.free_blocks_total:
        return 0
    if info.free_blocks_suitable:
        return -1000
    requested = 1 << order
    return 1000 - (1000 + info.free_pages * 1000 // requested) // info.free_blocks_total


def unusable_free_index(order: int, info: ContigPageInfo) -> int:
    if info.free_pages == 0:
        return 1000
    return (info.free_pages - (info.free_blocks_suitable << order)) * 1000 // info.free_pages


def compute_indices(zones: Iterable[ZoneFreeBlocks]) -> tuple[list[ZoneIndex], list[ZoneIndex]]:
    """(extfrag index, unusable free index) of every zone, exactly as the kernel would print them."""
    extfrag, unusable = [], []
    for zone in zones:
        infos = [fill_contig_page_info(zone.free_blocks, order) for order in range(len(zone.free_blocks))]
        extfrag.append(ZoneIndex(zone.node, zone.zone,
                                 tuple(fragmentation_index(o, info) for o, info in enumerate(infos))))
        unusable.append(ZoneIndex(zone.node, zone.zone,
                                  tuple(unusable_free_index(o, info) for o, info in enumerate(infos))))
    return extfrag, unusable


def format_value(index: int, width: int = 1) -> str:
    """`%<width>d.%03d` of `index / 1000` and `index % 1000` with C's truncating division."""
    whole = abs(index) // 1000 * (-1 if index < 0 else 1)
    return f"{whole:{width}d}.{index - whole * 1000:03d}"


def render_index_file(zones: Iterable[ZoneIndex], width: int = 1) -> str:
    """The file as the kernel prints it. unusable_index uses width 1; extfrag_index uses width 2 in kernels since
    2021 (`%2d.%03d`, this machine's 6.18 included) and width 1 before (3.10's `%d.%03d`)."""
    return "".join(
        f"Node {z.node}, zone {z.zone:>8} " + "".join(format_value(v, width) + " " for v in z.values) + "\n"
        for z in zones
    )
