"""Parser for a single-number sysctl file such as /proc/sys/vm/min_free_kbytes (`67584\n`)."""

from __future__ import annotations

import re

from exporter.sources import ParseError

_NUMBER = re.compile(r"\s*(-?\d+)\s*")


def parse_sysctl_int(text: str) -> int:
    """The integer a one-value sysctl file holds."""
    match = _NUMBER.fullmatch(text)
    if not match:
        raise ParseError(f"expected a single integer, got {text[:80]!r}")
    return int(match.group(1))
