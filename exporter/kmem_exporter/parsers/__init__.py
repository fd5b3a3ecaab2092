"""Pure parsers of kernel files: text in, dataclasses out, no I/O, no prometheus imports.

Every parser raises only `ParseError`, and refuses what the exporter could not export faithfully: numbers beyond
64 bits, a minus sign where the kernel prints an unsigned number, and more label values than the kernel can have
(NUMA nodes, zones, orders, migrate types). Lines are split on "\\n" only, as the kernel writes them: a name may hold
any other character, line separators of Unicode included.
"""

from __future__ import annotations

U64_MAX = 2**64 - 1
S64_MIN = -(2**63)
_U64_DIGITS = len(str(U64_MAX))  # 20

# Bounds of the labels the kernel itself keeps small.
MAX_NUMA_NODES = 1 << 10  # MAX_NUMNODES is 1 << CONFIG_NODES_SHIFT, and NODES_SHIFT is at most 10
MAX_ZONE_NAMES = 8  # enum zone_type: DMA, DMA32, Normal, HighMem, Movable, Device (at most 6), with room to spare
MAX_ORDERS = 64  # MAX_ORDER is below 64 on every architecture (11 on x86, up to 14 on arm64)
MAX_MIGRATE_TYPES = 16  # MIGRATE_TYPES is at most 7 (Unmovable ... Isolate)


class ParseError(ValueError):
    """The text is not in the format the parser expects; the message says where and why."""


class TooLarge(ParseError):
    """The text is well formed but holds more than the caller's bound allows."""


def split_lines(text: str) -> list[str]:
    """The lines of a kernel file, split on "\\n" only (a final "\\n" ends the last line, it does not start another).

    `str.splitlines` also splits on "\\r", "\\v", "\\f", "\\x1c".."\\x1e", "\\x85", U+2028 and U+2029, which the
    kernel prints as they are inside names (a memory cgroup's name in a per-cgroup slab cache, a mount point).
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def parse_unsigned(token: str, what: str) -> int:
    """A number the kernel prints unsigned (`%u`, `%lu`, `%llu`): ASCII digits, at most 2**64-1.

    `what` names the line and field in the message (`line 3: num_objs`).
    """
    if not (token.isdigit() and token.isascii()):
        sign = " (the kernel prints it unsigned)" if token.startswith("-") else ""
        raise ParseError(f"{what} is not a non-negative integer: {token[:40]!r}{sign}")
    return _bounded(token, token.lstrip("0"), what, U64_MAX)


def parse_signed(token: str, what: str, maximum: int = U64_MAX) -> int:
    """A number the kernel prints signed (`%d`, `%ld`): an optional minus and ASCII digits, from -2**63 to
    `maximum`."""
    digits = token[1:] if token.startswith("-") else token
    if not (digits.isdigit() and digits.isascii()):
        raise ParseError(f"{what} is not an integer: {token[:40]!r}")
    if token.startswith("-"):
        return -_bounded(token, digits.lstrip("0"), what, -S64_MIN)
    return _bounded(token, digits.lstrip("0"), what, maximum)


def _bounded(token: str, significant: str, what: str, limit: int) -> int:
    # int() of a long string is slow and refused past 4300 digits: count digits before converting.
    value = int(significant) if 0 < len(significant) <= _U64_DIGITS else 0
    if len(significant) > _U64_DIGITS or value > limit:
        shown = token if len(token) <= 30 else f"{token[:24]}... ({len(token)} characters)"
        raise ParseError(f"{what} does not fit in 64 bits: {shown}")
    return value


def parse_node_id(token: str, what: str) -> str:
    """A NUMA node number as the kernel prints it (`%d`, 0 .. MAX_NUMA_NODES-1), kept as the label text."""
    if not (token.isdigit() and token.isascii()) or len(token) > 4 or (token != "0" and token.startswith("0")) \
            or int(token) >= MAX_NUMA_NODES:
        raise ParseError(f"{what}: NUMA node {token[:30]!r} is not a node number 0..{MAX_NUMA_NODES - 1} "
                         f"(kernels have at most {MAX_NUMA_NODES} nodes)")
    return token


def add_bounded(seen: set[str], name: str, limit: int, what: str, where: str) -> None:
    """Add `name` to `seen`, refusing more than `limit` distinct names of a label the kernel keeps small."""
    seen.add(name)
    if len(seen) > limit:
        raise ParseError(f"{where}: more than {limit} distinct {what} (a kernel has fewer; garbled file?)")
