"""Parser for a single-number sysctl file such as /proc/sys/vm/min_free_kbytes (`67584\n`).

Most sysctls are C `int`s printed with `%d` (proc_dointvec), so a minus sign is valid for them; a few are
`unsigned long` (proc_doulongvec_minmax: `%lu`, up to 2**64-1). `parse_sysctl_int` takes any of them;
`parse_sysctl_unsigned` is for a sysctl the kernel keeps unsigned, and refuses a sign.
"""

from __future__ import annotations

import re

from kmem_exporter.parsers import ParseError, parse_signed, parse_unsigned

_NUMBER = re.compile(r"\s*(-?\d+)\s*", re.ASCII)


def _single_number(text: str) -> str:
    match = _NUMBER.fullmatch(text)
    if not match:
        raise ParseError(f"expected a single integer, got {text[:80]!r}")
    return match.group(1)


def parse_sysctl_int(text: str) -> int:
    """The integer a one-value sysctl file holds: from -2**63 to 2**64-1."""
    return parse_signed(_single_number(text), "the value")


def parse_sysctl_unsigned(text: str) -> int:
    """The integer a one-value sysctl file of an unsigned sysctl holds: from 0 to 2**64-1."""
    return parse_unsigned(_single_number(text), "the value")
