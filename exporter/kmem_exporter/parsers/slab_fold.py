"""/proc/slabinfo parsed and folded in one pass: what the slab and the conntrack collectors need, from one parse.

`parse_slab_families(text, fold_families)` gives `fold_caches(parse_slabinfo(text), fold_families)` and
`conntrack_caches(parse_slabinfo(text))` (and raises the same ParseError) without one object per line, fast enough
for a 3.10 node's 20,000 `nf_conntrack_<address>` caches or 160,000 per-cgroup ones.

How: the text is taken a chunk of lines at a time; a chunk whose text is the same as at the previous parse gives
the same totals, kept from then. A chunk whose every line has the usual shape (a name without
spaces, then the fifteen fixed fields) is split into tokens in one call, each column is taken by slicing and checked
whole, and only the grouping of lines into families runs per line in Python. Any other chunk (a name with spaces,
a blank line, a bad value) is read line by line by `parse_line`, which raises the exact error.
"""

from __future__ import annotations

from collections import Counter
from operator import itemgetter, mul
from typing import Optional

from kmem_exporter.parsers import U64_MAX, ParseError, TooLarge
from kmem_exporter.parsers.slab_grouping import family_key, group_rows
from kmem_exporter.parsers.slabinfo import (CONNTRACK_FAMILY, ConntrackCaches, SlabFamily, SlabSummary, check_header,
                                            conntrack_caches, conntrack_lines, fold_caches, parse_line, parse_slabinfo)

_CHUNK_CHARACTERS = 1 << 18  # the text is tokenized a chunk at a time, so a 20 MB file is never held twice
_END = "\x00"  # marks the line ends among a chunk's tokens: a name the kernel prints (a C string) cannot hold it
_WIDTH = 17  # tokens per line: the name, the fifteen fixed fields, the line-end mark
_MARKS = ((6, ":"), (7, "tunables"), (11, ":"), (12, "slabdata"))
# Once only the eleven numbers of each line are left: the seven a SlabFamily uses (active_objs, num_objs, objsize,
# objperslab, pagesperslab, active_slabs, num_slabs), and the four it does not (the tunables and sharedavail).
_PER_LINE = 11
_USED = (0, 1, 2, 3, 4, 8, 9)
_UNUSED = (5, 6, 7, 10)
_SAFE_DIGITS = 19  # every number of up to 19 digits fits in 64 bits
_MAXIMA = (3, 4, 5)  # positions in a running total that are maxima (the geometry); the others are sums

# Running totals per (exported name, memory cgroup copy): caches, then the SlabFamily fields after `caches`.
Totals = dict[tuple[str, bool], list[int]]

# The folded totals of each chunk of the previous parse, by the chunk's text. On a 3.10 node the caches leaked by
# dead network namespaces print the same lines at every scrape, ahead of the live caches (the kernel lists the
# newest cache first), so their chunks come back unchanged and are not parsed again. At most 8 MB of text is kept.
_CHUNK_MEMO: dict[tuple[str, bool], tuple[tuple[tuple[str, bool], tuple[int, ...]], ...]] = {}
_CHUNK_MEMO_CHARACTERS = 8 << 20
_BOUNDARY_MASK = 63  # a line ends a chunk when its successor's hash has these bits clear: one line in 64

# The result of each line of the previous parse, by the line's text, for a file of one chunk (a host without leaked
# caches: a few hundred lines). Most lines read the same from one scrape to the next, above all when scrapes come
# close together, and are not parsed again.
_LINE_MEMO: dict[tuple[str, bool], tuple[tuple[str, bool], tuple[int, ...]]] = {}


def parse_slab_families(text: str, fold_families: bool = True, max_names: Optional[int] = None) -> SlabSummary:
    """The exported series (folded into families or not) and the conntrack caches, from one pass over the text.
    The folding stops as soon as more than `max_names` exported names are found (memory stays bounded whatever the
    file): then the summary has no series, says why, and has the conntrack caches from their own lines."""
    try:
        return _parse_slab_families(text, fold_families, max_names)
    except TooLarge as err:
        return SlabSummary([], conntrack_lines(text), too_large=str(err))


def _parse_slab_families(text: str, fold_families: bool, max_names: Optional[int]) -> SlabSummary:
    if check_header(text):  # CONFIG_DEBUG_SLAB's statistics sections: rare, and the plain reading does
        caches = parse_slabinfo(text)
        summary = SlabSummary(fold_caches(caches, fold_families), conntrack_caches(caches))
        _check_names(len(summary.families), max_names)
        return summary
    totals: Totals = {}
    start, number = _after_comments(text)
    stop = len(text) - 1 if text.endswith("\n") else len(text)  # the last line's "\n" ends it, starts no other
    previous, seen = _CHUNK_MEMO.copy(), 0
    _CHUNK_MEMO.clear()
    while start < stop:
        end = _chunk_end(text, start, stop)
        chunk = text[start:end]
        folded = previous.get((chunk, fold_families))
        if folded is None:
            chunk_totals: Totals = {}
            if len(chunk) == stop - start:  # the whole file is one chunk
                _fold_lines(chunk.split("\n"), number, fold_families, chunk_totals, remember=True)
            elif not _fold_regular_chunk(chunk, fold_families, chunk_totals):
                _fold_lines(chunk.split("\n"), number, fold_families, chunk_totals)
            folded = tuple((key, tuple(values)) for key, values in chunk_totals.items())
        seen += len(chunk)
        if seen <= _CHUNK_MEMO_CHARACTERS:
            _CHUNK_MEMO[(chunk, fold_families)] = folded
        if totals:
            for key, values in folded:
                _add(totals, key, list(values))
        else:  # the first chunk: its keys are distinct
            totals = {key: list(values) for key, values in folded}
        number += chunk.count("\n") + 1
        start = end + 1
        _check_names(len(totals), max_names)
    if not totals:
        raise ParseError("no slab caches listed (truncated file?)")
    return SlabSummary(_families(totals), _conntrack(totals, fold_families))


def _check_names(names: int, max_names: Optional[int]) -> None:
    if max_names is not None and names > max_names:
        raise TooLarge(f"more than {max_names} slab cache names to export: more series than the collection's "
                         "bound (--collector.max-series) allows")


def _chunk_end(text: str, start: int, stop: int) -> int:
    """Where the chunk that starts at `start` ends: at a line end chosen by the line after it (its hash), past half
    the chunk size and before twice it, so that a cache listed at the top of the file (a new network namespace's, on
    3.10) shifts no boundary of the unchanged lines below it; `stop` when the text ends first."""
    end = text.find("\n", start + _CHUNK_CHARACTERS // 2, stop)
    longest = start + 2 * _CHUNK_CHARACTERS
    while 0 <= end < longest:
        following = text.find("\n", end + 1, stop)
        if hash(text[end + 1:stop if following < 0 else following]) & _BOUNDARY_MASK == 0:
            return end
        end = following
    return stop if end < 0 else end


def _after_comments(text: str) -> tuple[int, int]:
    """Where the cache lines start, past the header and the comment lines under it; and that line's number."""
    start, number = 0, 1
    while True:
        end = text.find("\n", start)
        if end < 0:
            return len(text), number
        start, number = end + 1, number + 1
        if not text.startswith("#", start):
            return start, number


def _fold_regular_chunk(chunk: str, fold_families: bool, totals: Totals) -> bool:
    """Fold a chunk whose every line has the usual shape, and say True; leave `totals` alone and say False for any
    other chunk."""
    if _END in chunk or chunk.startswith("#") or "\n#" in chunk:
        return False
    tokens = chunk.replace("\n", f" {_END} ").split()
    lines = chunk.count("\n") + 1
    # One line-end mark after every 16 tokens, and no other (none can be elsewhere): every line has 16 tokens.
    if len(tokens) != _WIDTH * lines - 1 or tokens[_WIDTH - 1::_WIDTH].count(_END) != lines - 1:
        return False
    if any(tokens[i::_WIDTH].count(mark) != lines for i, mark in _MARKS):
        return False
    names = tokens[0::_WIDTH]
    # Keep only the numbers, eleven per line: remove the names, the line ends and the marks (last first).
    del tokens[0::_WIDTH]
    del tokens[_WIDTH - 2::_WIDTH - 1]
    for width, (position, _) in zip((15, 14, 13, 12), reversed(_MARKS)):
        del tokens[position - 1::width]
    joined = "".join(tokens)
    if not (joined.isdigit() and joined.isascii()):
        return False
    del joined
    if any(max(map(len, tokens[i::_PER_LINE])) > _SAFE_DIGITS for i in _UNUSED):
        return False
    columns = [tokens[i::_PER_LINE] for i in _USED]
    del tokens
    groups = group_rows(names, fold_families)
    try:
        if len(groups) * 2 > len(names):  # mostly a cache per series (a host without leaks): every number is needed
            folded = _fold_distinct(columns, groups)
        else:
            folded = [(key, *_fold_rows(columns, rows)) for key, rows in groups.items()]
    except ValueError:  # more digits than int() takes (4300)
        return False
    if any(largest > U64_MAX for _, _, largest in folded):
        return False
    for key, values, _ in folded:
        _add(totals, key, values)
    return True


def _fold_distinct(columns: list[list[str]], groups: dict[tuple[str, bool], list[int]]
                   ) -> list[tuple[tuple[str, bool], list[int], int]]:
    """`_fold_rows` for every group, when most groups are one line: each line's numbers converted at once."""
    lines = list(zip(*(map(int, column) for column in columns)))
    folded = []
    for key, rows in groups.items():
        if len(rows) == 1:
            numbers = lines[rows[0]]
            active, objects, size, per_slab, pages_per_slab, active_slabs, slabs = numbers
            folded.append((key, [1, active, objects, size, per_slab, pages_per_slab, active_slabs, slabs,
                                 slabs * pages_per_slab], max(numbers)))
        else:
            folded.append((key, *_fold_rows(columns, rows)))
    return folded


def _fold_rows(columns: list[list[str]], rows: list[int]) -> tuple[list[int], int]:
    """The running totals of some lines of a chunk, from the columns of their numbers (as text); and the largest
    number among them."""
    if len(rows) == 1:
        numbers = [int(column[rows[0]]) for column in columns]
        active, objects, size, per_slab, pages_per_slab, active_slabs, slabs = numbers
        return [1, active, objects, size, per_slab, pages_per_slab, active_slabs, slabs,
                slabs * pages_per_slab], max(numbers)
    pick = itemgetter(*rows)
    (active, active_max), (objects, objects_max), (active_slabs, active_slabs_max), (slabs, slabs_max) = (
        _sum_and_max(pick(columns[i])) for i in (0, 1, 5, 6))
    size, per_slab = (max(map(int, set(pick(columns[i])))) for i in (2, 3))
    slab_pages = pick(columns[4])
    geometries = set(slab_pages)
    pages_per_slab = max(map(int, geometries))
    if len(geometries) == 1:  # the usual case: one geometry for the whole family
        pages = pages_per_slab * slabs
    else:
        pages = sum(map(mul, map(int, pick(columns[6])), map(int, slab_pages)))
    return ([len(rows), active, objects, size, per_slab, pages_per_slab, active_slabs, slabs, pages],
            max(active_max, objects_max, size, per_slab, pages_per_slab, active_slabs_max, slabs_max))


def _sum_and_max(numbers: tuple[str, ...]) -> tuple[int, int]:
    """Sum and largest of numbers written in ASCII digits; each distinct spelling is converted once (the lines of
    a family repeat the same few numbers), unless they are mostly distinct."""
    counts = Counter(numbers)
    if len(counts) * 2 > len(numbers):
        values = list(map(int, numbers))
        return sum(values), max(values)
    return sum(int(number) * count for number, count in counts.items()), max(map(int, counts))


def _fold_lines(lines: list[str], first_number: int, fold_families: bool, totals: Totals,
                remember: bool = False) -> None:
    """Fold the lines one by one with the plain parser (raising its exact error). With `remember`, each line's
    result is kept for the next such parse, and a line read the same as then is taken from it."""
    previous = _LINE_MEMO.copy() if remember else {}
    if remember:
        _LINE_MEMO.clear()
    for number, line in enumerate(lines, first_number):
        folded = previous.get((line, fold_families))
        if folded is None:
            if not line.strip() or line.startswith("#"):
                continue
            cache = parse_line(line, number, statistics=False)
            folded = (family_key(cache.name) if fold_families else (cache.name, False),
                      (1, cache.active_objects, cache.objects, cache.object_size, cache.objects_per_slab,
                       cache.pages_per_slab, cache.active_slabs, cache.slabs, cache.pages()))
        if remember:
            _LINE_MEMO[(line, fold_families)] = folded
        _add(totals, folded[0], list(folded[1]))


def _add(totals: Totals, key: tuple[str, bool], values: list[int]) -> None:
    total = totals.get(key)
    if total is None:
        totals[key] = values
        return
    for i, value in enumerate(values):
        total[i] = max(total[i], value) if i in _MAXIMA else total[i] + value


def _families(totals: Totals) -> list[SlabFamily]:
    """One series per exported name: a family's memory cgroup copies and its other caches together."""
    merged = totals
    if any(memcg for _, memcg in totals):
        merged = {}
        for (name, _), values in totals.items():
            _add(merged, (name, False), list(values))
    return [SlabFamily(name, *values) for (name, _), values in sorted(merged.items())]


def _conntrack(totals: Totals, folded: bool) -> ConntrackCaches:
    conntrack = (CONNTRACK_FAMILY, False)
    chosen = [values for key, values in totals.items() if (key if folded else family_key(key[0])) == conntrack]
    return ConntrackCaches(sum(v[0] for v in chosen), sum(v[1] for v in chosen), sum(v[2] for v in chosen))
