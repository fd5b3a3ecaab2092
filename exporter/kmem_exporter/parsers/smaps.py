"""Parser for the `KernelPageSize:` line of /proc/<pid>/smaps: the page size of the kernel that maps the memory.

    KernelPageSize:       64 kB

Every mapping's block has one. It is the kernel's base page size (4 kB on x86; 4, 16 or 64 kB on arm64; mostly 64 kB
on ppc64) for every mapping but a hugetlbfs one, and a process's first mapping (its program) is not one.
"""

from __future__ import annotations

import re

from kmem_exporter.parsers import ParseError

KERNEL_PAGE_SIZE_FIELD = "KernelPageSize:"

_LINE = re.compile(r"KernelPageSize:\s+(\d{1,9}) kB\s*", re.ASCII)


def parse_kernel_page_size(line: str) -> int:
    """The page size in bytes from a `KernelPageSize: N kB` line."""
    match = _LINE.fullmatch(line)
    if match is None or int(match.group(1)) == 0:
        raise ParseError(f"expected 'KernelPageSize: N kB' with N > 0, got {line[:80]!r}")
    return int(match.group(1)) * 1024
