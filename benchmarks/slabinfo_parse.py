"""Parse time of a large /proc/slabinfo: this host's caches plus many per-instance ones, as on a crowded node.

    .venv/bin/python benchmarks/slabinfo_parse.py [--memcg-caches 20000] [--conntrack-caches 2000] [--repeat 5]

The generated file has the real caches of tests/fixtures/live-6.18 plus per-memory-cgroup copies
(`dentry(1234:docker-<id>.scope)`, as 3.x-5.8 kernels name them) spread over a few common caches, and per-namespace
`nf_conntrack_<address>` caches as RHEL 7 names them. Prints the size of the input and the best time of each step:
parsing, folding into families, building the metric families, and all three (what one scrape costs); then the same
for the one-pass `parse_slab_families` (warm: the cache names seen at the previous scrape; cold: never seen), and the
peak memory (tracemalloc) each way takes beyond the text itself.

    .venv/bin/python benchmarks/slabinfo_parse.py --memcg-caches 161850 --conntrack-caches 0 --repeat 2   # 20 MB
"""

from __future__ import annotations

import argparse
import os
import re
import time
import tracemalloc
from pathlib import Path
from typing import Callable

from kmem_exporter.collectors.slabinfo import slab_metrics
from kmem_exporter.parsers import slab_fold, slab_grouping
from kmem_exporter.parsers.slab_fold import parse_slab_families
from kmem_exporter.parsers.slabinfo import SlabSummary, fold_caches, parse_slabinfo

LIVE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "live-6.18" / "proc" / "slabinfo"
MEMCG_ROOTS = ("dentry", "inode_cache", "kmalloc-64", "kmalloc-192", "radix_tree_node", "filp", "sock_inode_cache",
               "vm_area_struct")

EVERY_FIELD = re.compile(".*")  # every column, the most the collector can export


def generate(memcg_caches: int, conntrack_caches: int) -> str:
    lines = LIVE.read_text().splitlines()
    for i in range(memcg_caches):
        root = MEMCG_ROOTS[i % len(MEMCG_ROOTS)]
        cgroup = 1000 + i // len(MEMCG_ROOTS)
        lines.append(f"{root}({cgroup}:docker-{cgroup:012x}.scope)     21     21    192   21    1 : tunables    0    0"
                     f"    0 : slabdata      1      1      0")
    for i in range(conntrack_caches):
        lines.append(f"nf_conntrack_ffff88{0x03f0b7ba80 + i * 0x2700:010x}    400    400    320   25    2 : tunables"
                     f"    0    0    0 : slabdata     16     16      0")
    return "\n".join(lines) + "\n"


def best_of(repeat: int, step: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return min(times)


def peak_bytes(step: Callable[[], object]) -> int:
    """The most memory `step` held at once (Python allocations, tracemalloc)."""
    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def cold_families(text: str) -> SlabSummary:
    """A first parse: no cache name seen before, no chunk of the text either."""
    slab_grouping._FAMILY_MEMO.clear()
    slab_fold._CHUNK_MEMO.clear()
    return parse_slab_families(text)


def warm_families(text: str) -> SlabSummary:
    """A parse after one of other text with the same cache names: every line changed, every name known."""
    slab_fold._CHUNK_MEMO.clear()
    return parse_slab_families(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memcg-caches", type=int, default=20000)
    parser.add_argument("--conntrack-caches", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    text = generate(args.memcg_caches, args.conntrack_caches)
    caches = parse_slabinfo(text)
    families = fold_caches(caches)
    page = os.sysconf("SC_PAGE_SIZE")
    print(f"input: {len(caches)} caches, {len(text) / 1e6:.2f} MB; folded into {len(families)} series "
          f"({len(fold_caches(caches, fold_families=False))} without folding)")
    parse = best_of(args.repeat, lambda: parse_slabinfo(text))
    fold = best_of(args.repeat, lambda: fold_caches(caches))
    metrics = best_of(args.repeat, lambda: list(slab_metrics(families, page, EVERY_FIELD)))
    total = best_of(args.repeat, lambda: list(slab_metrics(fold_caches(parse_slabinfo(text)), page, EVERY_FIELD)))
    print(f"parse:   {parse * 1e3:8.1f} ms  ({parse / len(caches) * 1e6:.2f} us per line)")
    print(f"fold:    {fold * 1e3:8.1f} ms")
    print(f"metrics: {metrics * 1e3:8.1f} ms")
    print(f"total:   {total * 1e3:8.1f} ms  (best of {args.repeat})")
    summary = parse_slab_families(text)
    assert summary.families == families, "parse_slab_families disagrees with fold_caches(parse_slabinfo())"
    one_pass = best_of(args.repeat, lambda: warm_families(text))
    parse_slab_families(text)
    unchanged = best_of(args.repeat, lambda: parse_slab_families(text))
    cold = best_of(args.repeat, lambda: cold_families(text))
    one_pass_total = best_of(args.repeat,
                             lambda: list(slab_metrics(warm_families(text).families, page, EVERY_FIELD)))
    print(f"parse_slab_families: {one_pass * 1e3:8.1f} ms warm (names known, every line changed), "
          f"{cold * 1e3:.1f} ms cold, {unchanged * 1e3:.1f} ms for an unchanged text "
          f"({one_pass / len(caches) * 1e6:.2f} us per line); with metrics {one_pass_total * 1e3:.1f} ms; "
          f"conntrack: {summary.conntrack.caches} caches")
    size = len(text)
    plain_peak = peak_bytes(lambda: fold_caches(parse_slabinfo(text)))
    one_pass_peak = peak_bytes(lambda: cold_families(text))
    print(f"peak memory beyond the {size / 1e6:.2f} MB text: parse_slabinfo + fold_caches {plain_peak / 1e6:.1f} MB "
          f"({plain_peak / size:.1f}x), parse_slab_families {one_pass_peak / 1e6:.1f} MB ({one_pass_peak / size:.1f}x)")


if __name__ == "__main__":
    main()
