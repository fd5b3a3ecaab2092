"""The `Node N, zone NAME V1 V2 ...` rows of /proc/buddyinfo and the debugfs extfrag files (one value per order, the
same number of orders on every row), also the layout of the pageblock table in /proc/pagetypeinfo."""

from __future__ import annotations

import re

from exporter.sources import ParseError


def zone_row_pattern(value: str) -> re.Pattern[str]:
    """The pattern of a whole row whose values match the regular expression `value`."""
    return re.compile(rf"Node\s+(\d+),\s+zone\s+(\S+)((?:\s+{value})+)\s*")


def parse_zone_rows(text: str, row: re.Pattern[str], shape: str) -> list[tuple[str, str, list[str]]]:
    """(node, zone, value tokens) of every row, where `row` comes from `zone_row_pattern`; `shape` shows the values
    in messages (`COUNT...`)."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = row.fullmatch(line)
        if not match:
            raise ParseError(f"line {number}: expected 'Node N, zone NAME {shape}', got {line[:80]!r}")
        node, zone, values = match.groups()
        rows.append((node, zone, values.split()))
    if not rows:
        raise ParseError("no zones found (empty file)")
    orders = {len(values) for _, _, values in rows}
    if len(orders) != 1:
        raise ParseError(f"zones list different numbers of orders: {sorted(orders)} (truncated line?)")
    return rows
