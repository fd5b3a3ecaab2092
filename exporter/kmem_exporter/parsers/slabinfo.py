"""Parser for /proc/slabinfo (format 2.1) and the folding of per-instance cache names into families.

    slabinfo - version: 2.1
    # name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> ...
    nf_conntrack_ffff8803f0b7ba80     25     25    320   25    2 : tunables    0    0    0 : slabdata    1    1    0
    dentry             94813 107840    192   20    1 : tunables  120   60    8 : slabdata   5392   5392    204

SLUB prints the tunables as 0, SLAB prints its real ones; the layout is otherwise the same. A name longer than the
17-character column pushes the numbers right, so a line is split on whitespace: the last fifteen fields have a fixed
shape and everything before them is the name. Kernels built with CONFIG_DEBUG_SLAB say `2.1 (statistics)` and append
`: globalstat ...` and `: cpustat ...` sections, which are accepted and ignored. The older layouts, versions 2.0 and
1.x (2.4 and the first 2.6 kernels), are refused.

`parse_slabinfo` gives one `SlabCache` per line: the plain reading, kept simple. `kmem_exporter.parsers.slab_fold`
has the fast one-pass parse-and-fold that the collectors use on large files; the two agree on every input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from kmem_exporter.parsers import ParseError, parse_unsigned, split_lines

_HEADER = re.compile(r"slabinfo - version: (\S+)( \(statistics\))?")
_SUPPORTED_VERSION = "2.1"
_FIELDS_AFTER_NAME = 15  # 5 numbers, ": tunables" and 3 numbers, ": slabdata" and 3 numbers

# Names that carry a per-instance part. The family is what is left once that part is removed (see `family_name`).
#  - a memory cgroup's copy of a cache: `dentry(1234:docker-abc.scope)` (kernels 3.8 to 5.8 with kmem accounting);
#    `size-64(DMA)` (SLAB's DMA caches) has no `<id>:` and keeps its name.
#  - a per-network-namespace conntrack cache on 3.10 kernels: `nf_conntrack_ffff8803f0b7ba80` (a kernel address,
#    16 or 8 lowercase hex digits, at least one a digit) on early RHEL 7, `nf_conntrack_12` (a counter) on later ones.
_HEX = "0123456789abcdef"
# Families whose numbered caches are bounded and mean something on their own: `pid_2`, `pid_3`, ... are the caches of
# nested PID namespace levels (at most 32), not one cache per instance.
_NUMBERED_BY_DESIGN = frozenset({"pid"})
CONNTRACK_FAMILY = "nf_conntrack"


@dataclass(frozen=True)
class SlabCache:
    """One line of slabinfo."""

    name: str
    active_objects: int
    objects: int
    object_size: int  # bytes
    objects_per_slab: int
    pages_per_slab: int
    active_slabs: int
    slabs: int

    def pages(self) -> int:
        return self.slabs * self.pages_per_slab


@dataclass(frozen=True)
class SlabFamily:
    """One exported series: a cache, or several caches folded under one name.

    Counts are summed over the folded caches. A cache's geometry (object size, objects and pages per slab) may differ
    between the folded caches; the largest value is kept, so the result does not depend on the order of lines.
    """

    name: str
    caches: int
    active_objects: int
    objects: int
    object_size: int
    objects_per_slab: int
    pages_per_slab: int
    active_slabs: int
    slabs: int
    pages: int  # sum over the folded caches of slabs x pages per slab


@dataclass(frozen=True)
class ConntrackCaches:
    """The slab caches of connection tracking (`is_conntrack_cache`), summed."""

    caches: int
    active_objects: int
    objects: int


@dataclass(frozen=True)
class SlabSummary:
    """What one parse of slabinfo gives its collectors: the exported series, and the conntrack caches."""

    families: list[SlabFamily]  # sorted by name
    conntrack: ConntrackCaches
    too_large: str = ""  # why `families` is empty although caches are listed: more names than the series bound


_COLUMNS = ("active_objs", "num_objs", "objsize", "objperslab", "pagesperslab", None, None, "limit", "batchcount",
            "sharedfactor", None, None, "active_slabs", "num_slabs", "sharedavail")
_NUMERIC = tuple(i for i, column in enumerate(_COLUMNS) if column)


def check_header(text: str) -> bool:
    """Check the header line; whether the file has CONFIG_DEBUG_SLAB's statistics sections."""
    first = text[:text.find("\n")] if "\n" in text else text
    if not first.strip():
        raise ParseError("empty file: expected the header 'slabinfo - version: 2.1'")
    header = _HEADER.fullmatch(first.strip())
    if header is None:
        raise ParseError(f"line 1: expected 'slabinfo - version: 2.1', got {first[:80]!r}")
    if header.group(1) != _SUPPORTED_VERSION:
        raise ParseError(f"slabinfo version {header.group(1)[:40]} is not supported (only {_SUPPORTED_VERSION})")
    return header.group(2) is not None


def parse_line(line: str, line_number: int, statistics: bool) -> SlabCache:
    """One cache line (not blank, not a comment); `line_number` is for messages."""
    fields = line.split()
    # The first ": tunables" marks where the numbers start; the name is everything before the five numbers ahead of it.
    # Without statistics sections that is ten fields from the end, which is checked first.
    tunables = len(fields) - 10
    if tunables < 6 or fields[tunables] != ":" or fields[tunables + 1] != "tunables":
        tunables = next((i for i in range(6, len(fields) - 1) if fields[i] == ":" and fields[i + 1] == "tunables"), -1)
    if tunables < 0:
        raise ParseError(f"line {line_number}: expected 'NAME 5 numbers : tunables 3 numbers : slabdata 3 numbers', "
                         f"got {line[:120]!r}")
    tail = fields[tunables - 5:]
    if len(tail) < _FIELDS_AFTER_NAME or tail[10:12] != [":", "slabdata"]:
        raise ParseError(f"line {line_number}: expected ': slabdata' and three numbers after the tunables "
                         f"(truncated line?), got {line[:120]!r}")
    extra = tail[_FIELDS_AFTER_NAME:]
    if extra and (not statistics or extra[0] != ":"):
        raise ParseError(f"line {line_number}: unexpected {' '.join(extra)[:40]!r} after slabdata")
    for field in extra:  # the ': globalstat ...' and ': cpustat ...' sections of CONFIG_DEBUG_SLAB kernels
        if field != ":" and not (field.isascii() and (field.isdigit() or field.isalpha())):
            raise ParseError(f"line {line_number}: unexpected field {field[:40]!r} after slabdata")
    tokens = tail[0:5] + tail[7:10] + tail[12:15]  # the numbers: _NUMERIC
    joined = "".join(tokens)
    # The usual case, checked at once: ASCII digits, each fitting in 64 bits (at most 19 digits: sure when all
    # eleven together have at most 29).
    if not (joined.isdigit() and joined.isascii() and (len(joined) <= 29 or max(map(len, tokens)) <= 19)):
        for i in _NUMERIC:
            parse_unsigned(tail[i], f"line {line_number}: {_COLUMNS[i]}")  # raises, unless 20 digits that fit
    # The name as the kernel printed it, inner spaces and odd characters kept (split() would turn U+2028 into a
    # space): the line without its last len(tail) fields.
    name = fields[0] if tunables == 6 else line.rsplit(None, len(tail))[0].lstrip()
    active, objects, size, per_slab, pages_per_slab = map(int, tail[0:5])
    return SlabCache(name, active, objects, size, per_slab, pages_per_slab, int(tail[12]), int(tail[13]))


def parse_slabinfo(text: str) -> list[SlabCache]:
    """Every cache line, in file order (a name may appear more than once)."""
    statistics = check_header(text)
    caches = []
    for number, line in enumerate(split_lines(text), 1):
        if number == 1 or not line.strip() or line.startswith("#"):
            continue
        caches.append(parse_line(line, number, statistics))
    if not caches:
        raise ParseError("no slab caches listed (truncated file?)")
    return caches


def split_name(name: str) -> tuple[str, bool]:
    """(family, whether the cache is a memory cgroup's copy) of a cache name."""
    memcg = False
    if name[-1:] == ")":
        # `<family>(<digits>:<anything>)`: the first `(` (not at the start) followed by digits and a colon.
        start = name.find("(", 1)
        while start > 0:
            colon = name.find(":", start + 1)
            if colon < 0:
                break
            if name[start + 1:colon].isdecimal():
                name, memcg = name[:start], True
                break
            start = name.find("(", start + 1)
    underscore = name.rfind("_")
    if underscore <= 0:
        return name, memcg
    suffix = name[underscore + 1:]
    # A counter, or an address: 8 or 16 hex digits, at least one of them a decimal digit.
    if suffix.isdecimal() or (len(suffix) in (8, 16) and not suffix.strip(_HEX) and suffix.strip("abcdef")):
        family = name[:underscore]
        return (name, memcg) if family in _NUMBERED_BY_DESIGN else (family, memcg)
    return name, memcg


def family_name(name: str) -> str:
    """The family a cache belongs to: its name without a memory cgroup, address or counter suffix."""
    return split_name(name)[0]


def is_memcg_copy(name: str) -> bool:
    """Whether the cache is a memory cgroup's copy of a root cache (`dentry(1234:docker-abc)`)."""
    return split_name(name)[1]


def is_conntrack_cache(name: str) -> bool:
    """`nf_conntrack` (a single cache on newer kernels), `nf_conntrack_<address>` or `nf_conntrack_<number>` (one per
    network namespace on 3.10 and other older kernels). Not `nf_conntrack_expect`, and not a memory cgroup's copy of
    one of them."""
    return split_name(name) == (CONNTRACK_FAMILY, False)


def conntrack_caches(caches: Iterable[SlabCache]) -> ConntrackCaches:
    """The conntrack caches among `caches`, summed."""
    chosen = [c for c in caches if is_conntrack_cache(c.name)]
    return ConntrackCaches(len(chosen), sum(c.active_objects for c in chosen), sum(c.objects for c in chosen))


_CONNTRACK_LINE = re.compile(r"^[^\S\n]*nf_conntrack[^\n]*", re.MULTILINE)


def conntrack_lines(text: str) -> ConntrackCaches:
    """`conntrack_caches(parse_slabinfo(text))` from the lines that can be conntrack caches alone: the others are
    not parsed (or checked), so this stays cheap on a file of any size."""
    statistics = check_header(text)
    caches = []
    for match in _CONNTRACK_LINE.finditer(text):
        try:
            cache = parse_line(match.group(), 0, statistics)
        except ParseError:  # parsed again with its line number, for the message
            parse_line(match.group(), text.count("\n", 0, match.start()) + 1, statistics)
            raise
        caches.append(cache)
    return conntrack_caches(caches)


def fold_caches(caches: Iterable[SlabCache], fold_families: bool = True) -> list[SlabFamily]:
    """One SlabFamily per exported name, sorted by name.

    Caches listed under the same name are always folded (the kernel can list a name twice, and a series must be
    unique). With `fold_families`, caches are also folded into their family (see `family_name`).
    """
    groups: dict[str, list[SlabCache]] = {}
    for cache in caches:
        key = family_name(cache.name) if fold_families else cache.name
        groups.setdefault(key, []).append(cache)
    return [_fold(name, members) for name, members in sorted(groups.items())]


def _fold(name: str, members: list[SlabCache]) -> SlabFamily:
    return SlabFamily(
        name=name,
        caches=len(members),
        active_objects=sum(c.active_objects for c in members),
        objects=sum(c.objects for c in members),
        object_size=max(c.object_size for c in members),
        objects_per_slab=max(c.objects_per_slab for c in members),
        pages_per_slab=max(c.pages_per_slab for c in members),
        active_slabs=sum(c.active_slabs for c in members),
        slabs=sum(c.slabs for c in members),
        pages=sum(c.pages() for c in members),
    )
