"""Parser for /proc/buddyinfo: free blocks of each order, per NUMA node and zone.

    Node 0, zone      DMA      1      1      0      0      2      1      1      0      1      1      3
    Node 0, zone   Normal   1141    545    250    135     59     50     28     28     11      1     15

Column k counts free blocks of 2**k contiguous pages. The number of columns (MAX_ORDER) depends on the kernel's
configuration (11 on x86, 12 or 14 on arm64, 9 elsewhere) and is taken from the file.
"""

from __future__ import annotations

from dataclasses import dataclass

from kmem_exporter.parsers import parse_unsigned
from kmem_exporter.parsers.zone_rows import parse_zone_rows, zone_row_pattern

_ROW = zone_row_pattern(r"-?\d+")  # counts: unsigned long (`%6lu`), checked by parse_unsigned


@dataclass(frozen=True)
class ZoneFreeBlocks:
    node: str
    zone: str
    free_blocks: tuple[int, ...]  # index = order

    @property
    def largest_free_order(self) -> int:
        """The highest order with at least one free block, or -1 when the zone has none at all."""
        for order in range(len(self.free_blocks) - 1, -1, -1):
            if self.free_blocks[order]:
                return order
        return -1

    @property
    def free_pages(self) -> int:
        return sum(count << order for order, count in enumerate(self.free_blocks))


def parse_buddyinfo(text: str) -> list[ZoneFreeBlocks]:
    return [ZoneFreeBlocks(node, zone, counts)
            for node, zone, counts in parse_zone_rows(text, _ROW, "COUNT...", parse_unsigned)]
