"""Reading an exposition in tests: series and their values, family names and types, collector switches."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from kmem_exporter.collectors import COLLECTORS

Series = tuple[str, tuple[tuple[str, str], ...]]

_TYPE_LINE = re.compile(r"# TYPE (\S+) (\S+)")


def series_values(exposition: str) -> dict[Series, float]:
    """Every sample of a text exposition, keyed by (name, sorted labels)."""
    values: dict[Series, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in values, f"duplicate series {key}"
            values[key] = sample.value
    return values


def series_order(exposition: str) -> list[Series]:
    """The series of a text exposition in the order they appear."""
    return [(s.name, tuple(sorted(s.labels.items())))
            for family in text_string_to_metric_families(exposition) for s in family.samples]


def value(exposition: str, name: str, **labels: str) -> float:
    """The value of one series; KeyError when it is not exposed."""
    return series_values(exposition)[(name, tuple(sorted(labels.items())))]


def names(exposition: str) -> set[str]:
    """The sample names of an exposition."""
    return {name for name, _ in series_values(exposition)}


def types(exposition: str) -> dict[str, str]:
    """Metric name -> type, from the `# TYPE` lines of a text exposition."""
    return {m.group(1): m.group(2) for m in _TYPE_LINE.finditer(exposition)}


def collector_success(exposition: str) -> dict[str, float]:
    """kmem_collector_success by collector."""
    return {dict(labels)["collector"]: v for (name, labels), v in series_values(exposition).items()
            if name == "kmem_collector_success"}


def only_collectors(*enabled: str) -> list[str]:
    """Flags that enable exactly these collectors."""
    unknown = set(enabled) - set(COLLECTORS)
    assert not unknown, f"no such collectors: {unknown}"
    return ["--collector.disable-defaults", *(f"--collector.{name}" for name in enabled)]


def all_collectors() -> list[str]:
    """Flags that enable every collector, including those disabled by default, with every optional column."""
    return [f"--collector.{name}" for name in COLLECTORS] + ["--collector.slabinfo.fields=.*"]
