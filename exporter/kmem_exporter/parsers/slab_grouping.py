"""Slab cache names grouped by the series they are exported under, with a memo: the same names come back at every
scrape, so a name's family is worked out once."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Hashable, TypeVar, cast

from kmem_exporter.parsers.slabinfo import split_name

K = TypeVar("K", bound=Hashable)

# The family of each cache name seen lately: the same names come back at every scrape. Bounded (about 4 MB when
# full); a host with more per-instance caches than that pays for working their families out at each scrape.
_FAMILY_MEMO: dict[str, tuple[str, bool]] = {}


_MEMO_LIMIT = 1 << 15


def group_rows(names: list[str], fold_families: bool) -> dict[tuple[str, bool], list[int]]:
    """The positions of the names under each (exported name, memory cgroup copy)."""
    if not fold_families:
        return {(name, False): rows for name, rows in positions(names).items()}
    memo = _FAMILY_MEMO
    keys = list(map(memo.get, names))
    if None in keys:
        if len(memo) + len(names) > _MEMO_LIMIT:
            memo.clear()
        shared: dict[tuple[str, bool], tuple[str, bool]] = {}  # one key object per family, not one per name
        for row, name in enumerate(names):
            if keys[row] is None:
                key = split_name(name)
                keys[row] = memo[name] = shared.setdefault(key, key)
    return positions(cast("list[tuple[str, bool]]", keys))  # no None is left


def family_key(name: str) -> tuple[str, bool]:
    """`split_name`, remembered in the memo of `group_rows`."""
    key = _FAMILY_MEMO.get(name)
    if key is None:
        if len(_FAMILY_MEMO) >= _MEMO_LIMIT:
            _FAMILY_MEMO.clear()
        key = _FAMILY_MEMO[name] = split_name(name)
    return key


def positions(keys: list[K]) -> dict[K, list[int]]:
    """The rows of each key, in order. When keys repeat (20,000 conntrack caches folding into one family), the rows
    are grouped by a sort and cut at each key's bounds, with no Python step per row."""
    distinct = set(keys)
    if len(distinct) * 4 > len(keys):
        groups: dict[K, list[int]] = {}
        for row, key in enumerate(keys):
            group = groups.get(key)
            if group is None:
                groups[key] = [row]
            else:
                group.append(row)
        return groups
    index = {key: number for number, key in enumerate(distinct)}  # keys compared as numbers, in a stable sort
    numbers = list(map(index.__getitem__, keys))
    rows = sorted(range(len(keys)), key=numbers.__getitem__)
    sorted_numbers = list(map(numbers.__getitem__, rows))
    first = {key: bisect_left(sorted_numbers, number) for key, number in index.items()}
    return {key: rows[first[key]:bisect_right(sorted_numbers, index[key], first[key])]
            for key in sorted(index, key=lambda key: rows[first[key]])}  # by first row, as the loop above
