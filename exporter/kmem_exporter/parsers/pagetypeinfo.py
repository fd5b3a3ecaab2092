"""Parser for /proc/pagetypeinfo: free blocks per migrate type and order, and pageblocks per migrate type.

    Page block order: 9
    Pages per block:  512

    Free pages count per migrate type at order       0      1      2 ...
    Node    0, zone      DMA, type    Unmovable      0      0      1 ...
    ...

    Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic      Isolate
    Node 0, zone      DMA            1            7            0            0            0

The whole block repeats for every NUMA node with memory. The order columns and the migrate type names are taken
from the file (3.10 has Unmovable, Reclaimable, Movable, Reserve, CMA, Isolate; newer kernels HighAtomic instead of
Reserve). Since Linux 5.4 the kernel stops counting a free list at 100000 entries and prints `>100000`; such a count
is kept as 100000 with `capped` set. A "Number of mixed blocks" table (kernels with page_owner) is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from kmem_exporter.parsers import MAX_MIGRATE_TYPES, ParseError, add_bounded, parse_unsigned, split_lines
from kmem_exporter.parsers.zone_rows import ZoneKeys, check_orders, zone_row_pattern

_BLOCK_ORDER = re.compile(r"Page block order:\s*(\d+)\s*", re.ASCII)
_PAGES_PER_BLOCK = re.compile(r"Pages per block:\s*(\d+)\s*", re.ASCII)
_FREE_HEADER = re.compile(r"Free pages count per migrate type at order((?:\s+\d+)+)\s*", re.ASCII)
_FREE_ROW = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+),\s+type\s+(\S+)((?:\s+>?-?\d+)+)\s*", re.ASCII)
_TABLE_HEADER = re.compile(r"Number of (blocks type|mixed blocks)((?:\s+\S+)+?)\s*", re.ASCII)
_TABLE_ROW = zone_row_pattern(r"-?\d+")  # the layout of a buddyinfo line

CAP = 100000  # the kernel's limit on counted free-list entries (mm/vmstat.c, since 5.4)


@dataclass(frozen=True)
class MigratetypeFree:
    node: str
    zone: str
    migratetype: str
    free_blocks: tuple[int, ...]  # index = order
    capped: tuple[bool, ...]  # True where the kernel printed ">100000" (the count is at least that)


@dataclass(frozen=True)
class ZonePageblocks:
    node: str
    zone: str
    pageblocks: tuple[tuple[str, int], ...]  # (migrate type, number of pageblocks), in the file's order


@dataclass(frozen=True)
class Pagetypeinfo:
    pageblock_order: int
    pages_per_block: int
    free: tuple[MigratetypeFree, ...]
    pageblocks: tuple[ZonePageblocks, ...]


def _count(token: str, what: str) -> tuple[int, bool]:
    if token.startswith(">"):
        return parse_unsigned(token[1:], what), True
    return parse_unsigned(token, what), False


def parse_pagetypeinfo(text: str) -> Pagetypeinfo:
    block_orders: set[int] = set()
    pages_per_block: set[int] = set()
    orders: Optional[tuple[int, ...]] = None
    table: Optional[str] = None  # "blocks type" or "mixed blocks": the table whose rows follow
    types: tuple[str, ...] = ()
    free: dict[tuple[str, str, str], MigratetypeFree] = {}
    blocks: dict[tuple[str, str], ZonePageblocks] = {}

    zones = ZoneKeys()  # node numbers and zone names (pairs repeat: once per migrate type and in the table)
    mtypes: set[str] = set()
    for number, line in enumerate(split_lines(text), 1):
        where = f"line {number}"
        if not line.strip():
            continue
        if m := _BLOCK_ORDER.fullmatch(line):
            block_orders.add(parse_unsigned(m.group(1), f"{where}: page block order"))
            table = None
        elif m := _PAGES_PER_BLOCK.fullmatch(line):
            pages_per_block.add(parse_unsigned(m.group(1), f"{where}: pages per block"))
        elif m := _FREE_HEADER.fullmatch(line):
            tokens = m.group(1).split()
            check_orders(len(tokens), where)
            orders = tuple(parse_unsigned(o, f"{where}: order column") for o in tokens)
            if orders != tuple(range(len(orders))):
                raise ParseError(f"{where}: order columns are not 0..N: {orders}")
            table = None
        elif m := _FREE_ROW.fullmatch(line):
            node, zone, mtype, counts = m.groups()
            if orders is None:
                raise ParseError(f"{where}: free counts before the 'Free pages count' header")
            zones.check(node, zone, where)
            add_bounded(mtypes, mtype, MAX_MIGRATE_TYPES, "migrate types", where)
            parsed = [_count(c, f"{where}: {mtype} order {order}") for order, c in enumerate(counts.split())]
            if len(parsed) != len(orders):
                raise ParseError(f"{where}: {len(parsed)} counts for {len(orders)} orders (truncated line?)")
            if (node, zone, mtype) in free:
                raise ParseError(f"{where}: node {node} zone {zone} type {mtype} listed twice")
            free[(node, zone, mtype)] = MigratetypeFree(
                node, zone, mtype, tuple(c for c, _ in parsed), tuple(capped for _, capped in parsed))
        elif m := _TABLE_HEADER.fullmatch(line):
            table, types = m.group(1), tuple(m.group(2).split())
            for mtype in types:
                add_bounded(mtypes, mtype, MAX_MIGRATE_TYPES, "migrate types", where)
        elif m := _TABLE_ROW.fullmatch(line):
            node, zone, counts = m.groups()
            if table is None:
                raise ParseError(f"{where}: pageblock counts before the 'Number of blocks type' header")
            zones.check(node, zone, where)
            tokens = counts.split()
            if len(tokens) != len(types):
                raise ParseError(f"{where}: {len(tokens)} counts for {len(types)} migrate types (truncated line?)")
            values = [parse_unsigned(c, f"{where}: {mtype} pageblocks") for mtype, c in zip(types, tokens)]
            if table != "blocks type":
                continue
            if (node, zone) in blocks:
                raise ParseError(f"{where}: pageblocks of node {node} zone {zone} listed twice")
            blocks[(node, zone)] = ZonePageblocks(node, zone, tuple(zip(types, values)))
        else:
            raise ParseError(f"{where}: unexpected line {line[:80]!r}")

    if not free:
        raise ParseError("no free counts found (empty or truncated file)")
    if len(block_orders) != 1 or len(pages_per_block) != 1:
        raise ParseError(f"expected one 'Page block order' and 'Pages per block', got {sorted(block_orders)} "
                         f"and {sorted(pages_per_block)}")
    if not blocks:
        raise ParseError("no 'Number of blocks type' table (truncated file?)")
    return Pagetypeinfo(block_orders.pop(), pages_per_block.pop(), tuple(free.values()), tuple(blocks.values()))
