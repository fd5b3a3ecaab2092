"""Parser for /proc/zoneinfo: free pages, watermarks and sizes per NUMA node and zone.

    Node 0, zone   Normal
      per-node stats                  (4.8+: node-wide counters under the node's first zone; not zone data)
          nr_inactive_anon 508
      pages free     249025
            boost    0                (4.20+)
            min      5355
            low      6693
            high     8031
            scanned  0                (3.10)
            spanned  1048576
            present  1048576
            managed  1022000          (3.8+)
            protection: (0, 0, 0, 0)
          nr_free_pages 249025
      pagesets
        cpu: 0
                  count:    0
                  high:     0         (a per-CPU list's limit, not the zone watermark)

Values are in pages. Only the zone header, `pages free` and the two-word `<name> <pages>` lines are read; every
other line (statistics, per-CPU page sets, protection) is skipped, so new kernel fields do not break the parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from kmem_exporter.parsers import ParseError, parse_unsigned, split_lines
from kmem_exporter.parsers.zone_rows import ZoneKeys

_ZONE = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+)\s*", re.ASCII)
_FREE = re.compile(r"\s+pages free\s+(-?\d+)\s*", re.ASCII)  # values: unsigned long (`%lu`)
_FIELD = re.compile(r"\s+(min|low|high|boost|spanned|present|managed)\s+(-?\d+)\s*", re.ASCII)
_REQUIRED = ("min", "low", "high")


@dataclass(frozen=True)
class ZoneInfo:
    node: str
    zone: str
    free_pages: int
    min_pages: int
    low_pages: int
    high_pages: int
    managed_pages: Optional[int]  # None before Linux 3.8
    present_pages: Optional[int]
    spanned_pages: Optional[int]
    boost_pages: Optional[int]  # None before Linux 4.20

    @property
    def populated(self) -> bool:
        """False for a zone the kernel lists although it holds no memory (present 0)."""
        return self.present_pages != 0


def _finish(node: str, zone: str, free: Optional[int], fields: dict[str, int]) -> ZoneInfo:
    if free is None:
        raise ParseError(f"node {node} zone {zone}: no 'pages free' line (truncated file?)")
    missing = [name for name in _REQUIRED if name not in fields]
    if missing:
        raise ParseError(f"node {node} zone {zone}: no {', '.join(missing)} watermark (truncated file?)")
    return ZoneInfo(node, zone, free, fields["min"], fields["low"], fields["high"], fields.get("managed"),
                    fields.get("present"), fields.get("spanned"), fields.get("boost"))


def parse_zoneinfo(text: str) -> list[ZoneInfo]:
    zones: list[ZoneInfo] = []
    keys = ZoneKeys()
    current: Optional[tuple[str, str]] = None
    free: Optional[int] = None
    fields: dict[str, int] = {}

    for number, line in enumerate(split_lines(text), 1):
        if m := _ZONE.fullmatch(line):
            if current is not None:
                zones.append(_finish(*current, free, fields))
            keys.add(m.group(1), m.group(2), f"line {number}")
            current, free, fields = (m.group(1), m.group(2)), None, {}
        elif line.startswith("Node"):
            raise ParseError(f"line {number}: expected 'Node N, zone NAME', got {line[:80]!r}")
        elif current is None:
            if line.strip():
                raise ParseError(f"line {number}: data before the first 'Node N, zone NAME' line")
        elif m := _FREE.fullmatch(line):
            if free is not None:
                raise ParseError(f"line {number}: second 'pages free' line in node {current[0]} zone {current[1]}")
            free = parse_unsigned(m.group(1), f"line {number}: pages free")
        elif free is not None and (m := _FIELD.fullmatch(line)) and m.group(1) not in fields:
            # Only the lines right after `pages free` are zone fields; the first occurrence wins.
            fields[m.group(1)] = parse_unsigned(m.group(2), f"line {number}: {m.group(1)}")
    if current is None:
        raise ParseError("no zones found (empty file)")
    zones.append(_finish(*current, free, fields))
    return zones
