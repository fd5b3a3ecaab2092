"""The exposition written directly is byte for byte what prometheus-client's encoders write, on every fixture tree and
on hostile families; content negotiation never fails."""

from __future__ import annotations

import asyncio
import math
from functools import lru_cache
from typing import Sequence

import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import generate_latest as prometheus_text
from prometheus_client.openmetrics.exposition import generate_latest as prometheus_openmetrics

from conftest import FIXTURES, fixture_flags
from kmem_exporter.cli import collect_once
from kmem_exporter.config import parse_args
from kmem_exporter.exposition import OPENMETRICS, TEXT, accepts_gzip, choose_format, render
from kmem_exporter.families import RowFamily

TREES = sorted(p.name for p in FIXTURES.iterdir() if (p / "proc").is_dir())


class Families:
    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Sequence[Metric]:
        return self.families


@lru_cache(maxsize=None)
def collected(host: str) -> tuple[Metric, ...]:
    _, config = parse_args([*fixture_flags(host), "--collector.slabinfo.fields=.*"])
    return tuple(asyncio.run(collect_once(config)).families)


def no_errors(family: Metric, err: Exception) -> None:
    raise AssertionError(f"{family.name} could not be written: {err}")


@pytest.mark.parametrize("host", TREES)
def test_equal_to_prometheus_client_on_every_fixture_tree(host: str) -> None:
    families = collected(host)
    assert len(families) > 3
    assert render(families, TEXT, no_errors) == prometheus_text(Families(families))  # type: ignore[arg-type]
    assert render(families, OPENMETRICS, no_errors) == prometheus_openmetrics(Families(families))


def hostile_families() -> list[Metric]:
    labels = GaugeMetricFamily("kmem_test_labels", 'Help with a "quote", a \\ backslash\nand a newline.',
                               labels=["cache", "zone"])
    for value in ('dentry(12:a"b)', "back\\slash", "new\nline", "sep\u2028arator\u0085", "", "ü"):
        labels.add_metric([value, "Normal"], 1)
    special = GaugeMetricFamily("kmem_test_values", "Special values.", labels=["kind"])
    for kind, number in (("nan", math.nan), ("inf", math.inf), ("minus_inf", -math.inf), ("big", 2**64 - 1),
                        ("small", 1e-9), ("negative", -1), ("million", 1234567), ("zero", 0)):
        special.add_metric([kind], number)
    counter = CounterMetricFamily("kmem_test_events", "Events.", labels=["event"])
    counter.add_metric(["oom_kill"], 3)
    info = InfoMetricFamily("kmem_test_kernel", "Kernel.", value={"release": "3.10.0-514.el7.x86_64"})
    unit = GaugeMetricFamily("kmem_test_free_bytes", "Free.", value=4096, unit="bytes")
    return [labels, special, counter, info, unit, *row_families()]


def row_families() -> list[Metric]:
    """The same kinds of series as RowFamily, written by the row path of the encoder."""
    hostile = ('dentry(12:a"b)', "back\\slash", "new\nline", "sep\u2028arator\u0085", "", "ü")
    rows = RowFamily("kmem_test_rows", 'Rows with a "quote", a \\ backslash\nand a newline.', "gauge",
                     ("zone", "cache"), [("Normal", value) for value in hostile], list(range(len(hostile))))
    values = (math.nan, math.inf, -math.inf, 2**64 - 1, 1e-9, -1, 1234567, 0, 0.5)
    special = RowFamily("kmem_test_row_values", "Special values.", "gauge", ("kind",),
                        [(str(i),) for i in range(len(values))], values)
    counter = RowFamily("kmem_test_row_events", "Events.", "counter", ("event", "order"),
                        [("page_allocation_failure", "4"), ("oom_kill", "")], [3, 0])
    single_gauge = RowFamily.single("kmem_test_row_single", "One value.", "gauge", 7)
    single_counter = RowFamily.single("kmem_vmstat_compact_stall", "One count.", "counter", 2**63)
    unusual = RowFamily("kmem_test_row_unusual", "A label name the classic format cannot hold.", "gauge",
                        ("cache.name",), [("dentry",)], [1])
    return [rows, special, counter, single_gauge, single_counter, unusual]


def test_row_families_give_the_samples_of_their_rows() -> None:
    rows = RowFamily("kmem_test_rows", "Rows.", "counter", ("node", "zone"), [("0", "DMA"), ("1", "Normal")], [1, 2])
    expected = CounterMetricFamily("kmem_test_rows", "Rows.", labels=["node", "zone"])
    expected.add_metric(["0", "DMA"], 1)
    expected.add_metric(["1", "Normal"], 2)
    assert rows.samples == expected.samples
    assert rows == expected


def test_equal_to_prometheus_client_on_hostile_families() -> None:
    families = hostile_families()
    assert render(families, TEXT, no_errors) == prometheus_text(Families(families))  # type: ignore[arg-type]
    assert render(families, OPENMETRICS, no_errors) == prometheus_openmetrics(Families(families))


def test_a_family_that_cannot_be_written_is_left_out_alone() -> None:
    huge = GaugeMetricFamily("kmem_test_huge", "A value beyond any float.", value=10**400)
    good = GaugeMetricFamily("kmem_test_good", "Fine.", value=1)
    failed: list[str] = []
    body = render([huge, good], TEXT, lambda family, err: failed.append(family.name))
    assert failed == ["kmem_test_huge"]
    assert body == prometheus_text(Families([good]))  # type: ignore[arg-type]


PROMETHEUS_2 = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
PROMETHEUS_3 = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
                "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
                "text/plain;version=0.0.4;q=0.2,*/*;q=0.1")


@pytest.mark.parametrize("accept, expected", [
    ("", TEXT),
    ("*/*", TEXT),
    ("text/plain", TEXT),
    ("application/openmetrics-text", OPENMETRICS),
    ("application/openmetrics-text; version=1.0.0", OPENMETRICS),
    (PROMETHEUS_2, OPENMETRICS),
    (PROMETHEUS_3, OPENMETRICS),
    ("text/plain;q=0.9, application/openmetrics-text;q=0.5", TEXT),
    ("application/openmetrics-text; version=abc", TEXT),
    ("application/openmetrics-text; version=0.0.1", TEXT),
    ("application/openmetrics-text; q=abc", TEXT),
    ("application/openmetrics-text; q=0", TEXT),
    ("application/json", TEXT),
    (";;;,,,=;q=", TEXT),
    ("x" * 100_000, TEXT),
])
def test_format_negotiation(accept: str, expected: object) -> None:
    assert choose_format(accept) is expected


@pytest.mark.parametrize("accept_encoding, gzip", [
    ("", False),
    ("gzip", True),
    ("gzip, deflate, br", True),
    ("gzip;q=0", False),
    ("gzip;q=0.0, identity", False),
    ("*", True),
    ("*;q=0", False),
    ("identity", False),
    ("gzip;q=abc", False),
    ("deflate, *;q=0.1", True),
    ("GZIP", True),
])
def test_gzip_negotiation(accept_encoding: str, gzip: bool) -> None:
    assert accepts_gzip(accept_encoding) is gzip
