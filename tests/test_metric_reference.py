"""docs/metrics.md and the exposition name the same metrics, on every fixture tree and this host."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from conftest import FIXTURES, PROJECT, is_root, run_exporter, scrape_fixture
from metrics_text import all_collectors, types

_ROW = re.compile(r"^\| `([^`]+)` \| (\w+) \|", re.M)


@dataclass(frozen=True)
class Row:
    name: str  # as written; `<field>` stands for any name part
    type: str

    @property
    def pattern(self) -> re.Pattern[str]:
        parts = re.split(r"<[^>]+>", self.name)
        return re.compile("[a-zA-Z0-9_]+".join(re.escape(p) for p in parts))

    @property
    def is_pattern(self) -> bool:
        return "<" in self.name


def documented_rows() -> list[Row]:
    reference = (PROJECT / "docs" / "metrics.md").read_text()
    rows = [Row(name, kind) for name, kind in _ROW.findall(reference)]
    assert rows, "no rows in the metric reference (docs/metrics.md)"
    return rows


def test_no_metric_is_documented_twice() -> None:
    names = [row.name for row in documented_rows()]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_pattern_rows_are_understood() -> None:
    row = Row("kmem_vmstat_<field>_total", "counter")
    assert row.is_pattern
    assert row.pattern.fullmatch("kmem_vmstat_compact_stall_total")
    assert not row.pattern.fullmatch("kmem_vmstat_compact_stall")
    assert not row.pattern.fullmatch("kmem_vmstat__total")


def exposed_types() -> dict[str, str]:
    """Metric name -> type over every fixture tree and this host, all collectors enabled."""
    runs = [scrape_fixture(tree.name, *all_collectors()) for tree in sorted(FIXTURES.iterdir()) if tree.is_dir()]
    assert is_root(), "the live scrape needs root to read every kernel file"
    runs.append(run_exporter("scrape", *all_collectors()))
    # nr_* vmstat fields are gauges that appear only when a user selects them.
    runs.append(run_exporter("scrape", *all_collectors(), "--collector.vmstat.fields=nr_free_pages|compact_stall"))
    exposed: dict[str, str] = {}
    for run in runs:
        assert run.returncode in (0, 1), run.stderr
        exposed.update(types(run.stdout))
    return exposed


@pytest.fixture(scope="module")
def exposed() -> dict[str, str]:
    return exposed_types()


def test_every_exposed_metric_is_documented(exposed: dict[str, str]) -> None:
    rows = documented_rows()
    exact = {row.name for row in rows if not row.is_pattern}
    patterns = [row.pattern for row in rows if row.is_pattern]
    undocumented = sorted(name for name in exposed
                          if name not in exact and not any(p.fullmatch(name) for p in patterns))
    assert not undocumented, f"exposed but not in the metric reference: {undocumented}"


def test_every_documented_metric_is_exposed(exposed: dict[str, str]) -> None:
    missing = sorted(row.name for row in documented_rows()
                     if not any(row.pattern.fullmatch(name) for name in exposed))
    assert not missing, f"in the metric reference but never exposed: {missing}"


def test_documented_types_match(exposed: dict[str, str]) -> None:
    wrong = sorted(f"{name}: docs/metrics.md says {row.type}, exposed as {kind}"
                   for row in documented_rows() for name, kind in exposed.items()
                   if row.pattern.fullmatch(name) and row.type != kind)
    assert not wrong, wrong
