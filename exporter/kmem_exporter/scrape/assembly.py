"""A collection's families put together: each collector's checked, shared families merged in a stable order, and
the exporter's own series about its collectors."""

from __future__ import annotations

import functools
from typing import Iterable, Sequence

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.samples import Sample

from kmem_exporter.build_info import build_labels
from kmem_exporter.collectors.errors import CollectorError
from kmem_exporter.families import RowFamily
from kmem_exporter.scrape.collection import CollectorOutcome


def check_exportable(families: Iterable[Metric]) -> None:
    """CollectorError unless every sample has a value the exposition can write, string labels, and no series twice:
    what a collector returns can fail that collector, never the encoder and so the whole scrape."""
    for family in families:
        if isinstance(family, RowFamily):
            try:
                family.check()
            except ValueError as err:
                raise CollectorError(f"{family.name}: {err}") from None
            continue
        series = set()
        for sample in family.samples:
            if type(sample.value) is not float:
                try:
                    float(sample.value)
                except (TypeError, ValueError, OverflowError):
                    shown = str(sample.value)[:40]
                    raise CollectorError(f"{family.name}: value {shown!r} cannot be exported") from None
            try:  # label values come from kernel strings, which hold no NUL
                series.add("\0".join((sample.name, *sample.labels.values())))
            except TypeError:
                raise CollectorError(f"{family.name}: a label value is not a string: {sample.labels!r:.80}") from None
        if len(series) != len(family.samples):
            raise CollectorError(f"{family.name}: a series is listed twice")


def series_count(families: Iterable[Metric]) -> int:
    return sum(len(f.values) if isinstance(f, RowFamily) else len(f.samples) for f in families)


def bound_series(outcomes: Sequence[CollectorOutcome], max_series: int) -> list[CollectorOutcome]:
    """The outcomes within `max_series` series in all: while the collection is above it, the collector with the
    most series fails (its series left out, the reason given), so that the others are served whole."""
    counts = {o.name: series_count(o.metrics) for o in outcomes}
    total = sum(counts.values())
    failed: dict[str, str] = {}
    for name in sorted(counts, key=lambda n: -counts[n]):
        if total <= max_series:
            break
        failed[name] = (f"{counts[name]} series would take the collection to {total}, over "
                        f"--collector.max-series={max_series}; its series are left out")
        total -= counts[name]
    return [CollectorOutcome(o.name, (), o.duration, failed[o.name]) if o.name in failed else o for o in outcomes]


def merge_families(families: Iterable[Metric]) -> list[Metric]:
    """One family per name, sorted by name. Collectors may share a family (the background-pass gauges): its samples
    are merged and put in a stable order, by name, then label values (numbers numerically), the last of a duplicate
    series kept. A family from one collector keeps that collector's order."""
    groups: dict[str, list[Metric]] = {}
    for family in families:
        groups.setdefault(family.name, []).append(family)
    merged = []
    for name in sorted(groups):
        group = groups[name]
        if len(group) == 1:
            merged.append(group[0])
            continue
        target = Metric(name, group[0].documentation, group[0].type, group[0].unit)
        unique = {(s.name, *sorted(s.labels.items())): s for family in group for s in family.samples}
        target.samples = sorted(unique.values(), key=_sample_order)
        merged.append(target)
    return merged


def _sample_order(sample: Sample) -> tuple[object, ...]:
    return (sample.name, *(_natural(v) for _, v in sorted(sample.labels.items())))


@functools.lru_cache(maxsize=4096)
def _natural(value: str) -> tuple[int, object]:
    """Numbers in numeric order (order 2 before order 10), then everything else by text."""
    return (0, int(value)) if value.isdigit() and value.isascii() else (1, value)


def self_metrics(outcomes: Sequence[CollectorOutcome]) -> list[Metric]:
    success = GaugeMetricFamily("kmem_collector_success", "1 if the collector's last scrape succeeded, 0 if it failed.",
                                labels=["collector"])
    duration = GaugeMetricFamily("kmem_collector_duration_seconds", "How long the collector took in the last scrape.",
                                 labels=["collector"])
    for outcome in sorted(outcomes, key=lambda o: o.name):
        success.add_metric([outcome.name], 0.0 if outcome.error else 1.0)
        duration.add_metric([outcome.name], outcome.duration)
    build = InfoMetricFamily("kmem_exporter_build", "The exporter's version and the source revision it was built "
                             "from (\"unknown\" when the build did not record it); the value is always 1.",
                             value=build_labels())
    return [success, duration, build]
