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

from kmem_exporter.parsers import ParseError, parse_unsigned, split_lines

_OTHER_SEPARATORS = re.compile("[\x1c-\x1f]")  # whitespace to str.split(), not to \s in ASCII regular expressions
_LINE = re.compile(r"([A-Za-z0-9_]+)\s+(-?\d+)\s*", re.ASCII)  # values: unsigned long (`%lu`)
# The kernel's field list is fixed when it is built (about 200 names on 6.x); far more is a garbled file, refused
# before it turns into as many series.
MAX_FIELDS = 4096


def is_gauge(field: str) -> bool:
    """Whether a vmstat field is a current amount rather than an event count."""
    return field.startswith("nr_")


def parse_vmstat(text: str) -> dict[str, int]:
    """The fields of /proc/vmstat in file order."""
    return _parse_regular(text) or _parse_lines(text)


def _parse_regular(text: str) -> dict[str, int] | None:
    """The fields when every line is `NAME VALUE` with a value of at most 19 digits, checked a column at a time;
    None for anything else, which `_parse_lines` reads (and explains)."""
    if not text.isascii() or _OTHER_SEPARATORS.search(text):
        return None  # str.split() would split where the line reading does not (NEL, U+2028, \x1c..\x1f)
    tokens = text.split()
    names, values = tokens[0::2], tokens[1::2]
    if not names or len(names) != len(values) or len(names) > MAX_FIELDS or text.count("\n") + (
            not text.endswith("\n")) != len(names):
        return None
    digits = "".join(values)
    letters = "".join(names).replace("_", "0")
    if not (digits.isdigit() and digits.isascii() and letters.isalnum() and letters.isascii()):
        return None
    if max(map(len, values)) > 19:  # 20 digits may exceed 64 bits
        return None
    fields = dict(zip(names, map(int, values)))
    return fields if len(fields) == len(names) else None


def _parse_lines(text: str) -> dict[str, int]:
    fields: dict[str, int] = {}
    for number, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        match = _LINE.fullmatch(line)
        if not match:
            raise ParseError(f"line {number}: expected 'NAME VALUE', got {line[:80]!r}")
        name, value = match.groups()
        if name in fields:
            raise ParseError(f"line {number}: field {name!r} appears twice")
        fields[name] = parse_unsigned(value, f"line {number}: {name}")
        if len(fields) > MAX_FIELDS:
            raise ParseError(f"line {number}: more than {MAX_FIELDS} fields (a kernel has about 200; garbled file?)")
    if not fields:
        raise ParseError("no fields found (empty file)")
    return fields
