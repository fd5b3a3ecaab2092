"""Slab caches from /proc/slabinfo: objects, slabs and bytes per cache, per-instance caches folded into families.

`read_slab_summary` is shared with the conntrack collector, which counts its caches in the same file: one read and
one parse per scrape serve both. Above the series bound the slab series fail, and the conntrack caches are still
counted (from their own lines).
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Iterable, Optional

from prometheus_client.core import Metric

from kmem_exporter.collectors.base import Collector, CollectorSettings
from kmem_exporter.collectors.errors import CollectorError
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.families import RowFamily
from kmem_exporter.settings import Setting, parse_bool, parse_regex
from kmem_exporter.parsers.slab_fold import parse_slab_families
from kmem_exporter.parsers.slabinfo import SlabFamily, SlabSummary


@functools.lru_cache(maxsize=8)
def _parser(fold: bool, max_names: Optional[int]) -> Callable[[str], SlabSummary]:
    """The parse of slabinfo for these settings: one function for them, so that both collectors share its result."""
    return functools.partial(parse_slab_families, fold_families=fold, max_names=max_names)


def read_slab_summary(config: CollectorSettings, files: KernelFiles) -> SlabSummary:
    """`<procfs>/slabinfo`, parsed once per scrape for both collectors that need it (folded or not as
    --collector.slabinfo.fold-caches says); CollectorError when it cannot be read (root-only) or parsed. When it
    lists more names than the collection's series bound leaves room for, the summary says so (`too_large`)."""
    fold = bool(config.option("collector.slabinfo.fold-caches"))
    max_series: Optional[int] = getattr(config, "max_series", None)
    fields: Optional[re.Pattern[str]] = config.option("collector.slabinfo.fields")  # type: ignore[assignment]
    per_name = sum(1 for suffix in FIELDS if fields is None or fields.fullmatch(suffix)) or 1
    per_cache = None if max_series is None else max_series // per_name
    return files.parse(config.procfs / "slabinfo", _parser(fold, per_cache))


def _selected(name: str, include: Optional[re.Pattern[str]], exclude: Optional[re.Pattern[str]]) -> bool:
    if include is not None and not include.fullmatch(name):
        return False
    return exclude is None or not exclude.fullmatch(name)


# (metric suffix, help, value of a SlabFamily given the page size)
_SERIES: tuple[tuple[str, str, Callable[[SlabFamily, int], int]], ...] = (
    ("objects_active", "Objects in use in the slab cache.", lambda f, page: f.active_objects),
    ("objects", "Objects the slab cache has room for (in use or free) in its allocated slabs.",
     lambda f, page: f.objects),
    ("object_size_bytes", ("Size of one object of the slab cache, including the allocator's padding (the largest "
                           "size when the series stands for several caches)."), lambda f, page: f.object_size),
    ("objects_per_slab", "Objects that fit in one slab of the cache.", lambda f, page: f.objects_per_slab),
    ("pages_per_slab", "Pages that make up one slab of the cache (a slab of 2^N pages needs an order-N allocation).",
     lambda f, page: f.pages_per_slab),
    ("slabs_active", "Slabs of the cache that hold at least one object in use (SLUB counts every slab as active).",
     lambda f, page: f.active_slabs),
    ("slabs", "Slabs allocated to the cache.", lambda f, page: f.slabs),
    ("bytes", "Memory the slab cache holds: slabs x pages per slab x page size.", lambda f, page: f.pages * page),
    ("caches", ("How many slab caches this series stands for: more than 1 when per-instance caches (per network "
                "namespace, per memory cgroup) are folded into their family, or when the kernel lists a name twice."),
     lambda f, page: f.caches),
)


FIELDS = tuple(suffix for suffix, _, _ in _SERIES)
# What the dashboards, alerts and `report` read: about 2 series per cache, so a host stays under 1,000 series.
DEFAULT_FIELDS = "bytes|caches"


class SlabinfoCollector(Collector):
    name = "slabinfo"
    description = "objects, slabs and bytes per slab cache from /proc/slabinfo (root only)"
    options = (
        Setting("collector.slabinfo.fold-caches", parse_bool, True,
                "Fold caches named after an address, a counter or a memory cgroup (nf_conntrack_ffff8803f0b7ba80, "
                "dentry(1234:docker-abc)) into their family, to keep the number of series bounded."),
        Setting("collector.slabinfo.include", parse_regex, None,
                "Only export caches whose exported (folded) name fully matches this regular expression.", "REGEX"),
        Setting("collector.slabinfo.exclude", parse_regex, None,
                "Do not export caches whose exported (folded) name fully matches this regular expression.", "REGEX"),
        Setting("collector.slabinfo.fields", parse_regex, DEFAULT_FIELDS,
                "Regular expression matched against whole column names (" + ", ".join(FIELDS) + "); a "
                "kmem_slab_<field> metric is exported for each column that matches.", "REGEX"),
    )

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        summary = read_slab_summary(self.config, files)
        if summary.too_large:
            raise CollectorError(f"{self.config.procfs / 'slabinfo'}: {summary.too_large}")
        families = summary.families
        include: Optional[re.Pattern[str]] = self.option("include")  # type: ignore[assignment]
        exclude: Optional[re.Pattern[str]] = self.option("exclude")  # type: ignore[assignment]
        selected = [f for f in families if _selected(f.name, include, exclude)]
        fields: re.Pattern[str] = self.option("fields")  # type: ignore[assignment]
        return list(slab_metrics(selected, self.page_size, fields))


def slab_metrics(families: Iterable[SlabFamily], page_size: int, fields: re.Pattern[str]) -> Iterable[Metric]:
    """One gauge family per selected column, each with a series per exported cache name."""
    families = list(families)
    caches = [(family.name,) for family in families]
    for suffix, help_text, value in _SERIES:
        if fields.fullmatch(suffix):
            yield RowFamily(f"kmem_slab_{suffix}", help_text, "gauge", ("cache",), caches,
                            [value(family, page_size) for family in families])
