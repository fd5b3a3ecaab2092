"""Every exposition passes `promtool check metrics`, and the same input gives the same series in the same order."""

from __future__ import annotations

from typing import Callable

import pytest

from conftest import FIXTURES, RunningExporter, fixture_flags, is_root, promtool_check_metrics, run_exporter, \
    scrape_fixture
from metrics_text import all_collectors, series_order

TREES = sorted(tree.name for tree in FIXTURES.iterdir() if tree.is_dir())


@pytest.mark.parametrize("tree", TREES)
def test_promtool_is_silent_on_fixture_tree(tree: str) -> None:
    result = scrape_fixture(tree, *all_collectors())
    assert result.returncode in (0, 1), result.stderr
    assert "kmem_collector_success" in result.stdout
    assert promtool_check_metrics(result.stdout) == ""


@pytest.mark.live
def test_promtool_is_silent_on_this_host() -> None:
    assert is_root(), "the live scrape needs root to read every kernel file"
    result = run_exporter("scrape", *all_collectors())
    assert result.returncode in (0, 1), result.stderr
    assert promtool_check_metrics(result.stdout) == ""


@pytest.mark.parametrize("tree", TREES)
def test_consecutive_scrapes_have_the_same_series_in_the_same_order(
        exporter_factory: Callable[..., RunningExporter], tree: str) -> None:
    exporter = exporter_factory(*fixture_flags(tree), *all_collectors())
    first = series_order(exporter.metrics())
    second = series_order(exporter.metrics())
    assert len(first) > 10
    assert first == second
