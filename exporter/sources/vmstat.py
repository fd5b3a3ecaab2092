"""Parser for /proc/vmstat: one `name value` pair per line.

    nr_free_pages 1025782
    compact_stall 14
    allocstall_normal 0

Names starting with `nr_` are current amounts (gauges); the rest are event counts since boot (counters). Which
names exist depends on the kernel version and configuration: 3.10 has a single `allocstall` and per-zone
`pgscan_kswapd_<zone>`; 4.x+ splits `allocstall_<zone>` and has `oom_kill`.
"""

from __future__ import annotations

import re

from exporter.sources import ParseError

_LINE = re.compile(r"([A-Za-z0-9_]+)\s+(-?\d+)\s*")


def is_gauge(field: str) -> bool:
    """Whether a vmstat field is a current amount rather than an event count."""
    return field.startswith("nr_")


def parse_vmstat(text: str) -> dict[str, int]:
    """The fields of /proc/vmstat in file order."""
    fields: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.fullmatch(line)
        if not match:
            raise ParseError(f"line {number}: expected 'NAME VALUE', got {line[:80]!r}")
        name, value = match.groups()
        if name in fields:
            raise ParseError(f"line {number}: field {name!r} appears twice")
        fields[name] = int(value)
    if not fields:
        raise ParseError("no fields found (empty file)")
    return fields
