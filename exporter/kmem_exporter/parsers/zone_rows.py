"""The `Node N, zone NAME V1 V2 ...` rows of /proc/buddyinfo and the debugfs extfrag files (one value per order, the
same number of orders on every row), also the layout of the pageblock table in /proc/pagetypeinfo."""

from __future__ import annotations

import re
from typing import Callable

from kmem_exporter.parsers import MAX_ORDERS, MAX_ZONE_NAMES, ParseError, add_bounded, parse_node_id, split_lines


def zone_row_pattern(value: str) -> re.Pattern[str]:
    """The pattern of a whole row whose values match the regular expression `value` (ASCII digits and spaces)."""
    return re.compile(rf"Node\s+(\d+),\s+zone\s+(\S+)((?:\s+{value})+)\s*", re.ASCII)


class ZoneKeys:
    """The (node, zone) pairs of a file, checked as they come: node numbers a kernel can have, at most
    MAX_ZONE_NAMES zone names, and each pair once (per table, for files with several)."""

    def __init__(self) -> None:
        self.zone_names: set[str] = set()
        self.pairs: set[tuple[str, str]] = set()

    def check(self, node: str, zone: str, where: str) -> None:
        """Check a pair without recording it (a pair that may repeat, as in pagetypeinfo's free rows)."""
        parse_node_id(node, where)
        add_bounded(self.zone_names, zone, MAX_ZONE_NAMES, "zone names", where)

    def add(self, node: str, zone: str, where: str) -> None:
        """Check a pair and refuse it when it was seen before."""
        self.check(node, zone, where)
        if (node, zone) in self.pairs:
            raise ParseError(f"{where}: node {node} zone {zone} is listed twice")
        self.pairs.add((node, zone))


def check_orders(count: int, where: str) -> None:
    if count > MAX_ORDERS:
        raise ParseError(f"{where}: {count} orders (a kernel has at most {MAX_ORDERS})")


def parse_zone_rows(text: str, row: re.Pattern[str], shape: str,
                    value: Callable[[str, str], int]) -> list[tuple[str, str, tuple[int, ...]]]:
    """(node, zone, values) of every row, where `row` comes from `zone_row_pattern`; `shape` shows the values in
    messages (`COUNT...`); `value(token, what)` converts one value, `what` naming the line and order."""
    rows = []
    keys = ZoneKeys()
    for number, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        match = row.fullmatch(line)
        if not match:
            raise ParseError(f"line {number}: expected 'Node N, zone NAME {shape}', got {line[:80]!r}")
        node, zone, values = match.groups()
        tokens = values.split()
        keys.add(node, zone, f"line {number}")
        check_orders(len(tokens), f"line {number}")
        where = f"line {number}: node {node} zone {zone} order"
        rows.append((node, zone, tuple(value(token, f"{where} {order}") for order, token in enumerate(tokens))))
    if not rows:
        raise ParseError("no zones found (empty file)")
    orders = {len(values) for _, _, values in rows}
    if len(orders) != 1:
        raise ParseError(f"zones list different numbers of orders: {sorted(orders)} (truncated line?)")
    return rows
