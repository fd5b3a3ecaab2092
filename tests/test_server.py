"""The real exporter on a real loopback port, scraped over HTTP."""

from __future__ import annotations

import gzip
import signal
import threading
import time
from typing import Callable

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from conftest import FIXTURES, WAIT_SECONDS, RunningExporter, fixture_flags, promtool_check_metrics, wait_for
from metrics_text import collector_success, only_collectors, series_values, value
from stuck_files import StuckTreeFactory, stuck_trees  # noqa: F401  (a fixture)

FOUR = only_collectors("buddyinfo", "vmstat", "sysctl", "kernel")
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@pytest.fixture
def fragmented(exporter_factory: Callable[..., RunningExporter]) -> RunningExporter:
    return exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR)


def test_text_format(fragmented: RunningExporter) -> None:
    status, headers, body = fragmented.get("/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    assert promtool_check_metrics(text) == ""
    assert collector_success(text) == {"buddyinfo": 1, "vmstat": 1, "sysctl": 1, "kernel": 1}
    assert value(text, "kmem_buddy_free_blocks", node="0", zone="Normal", order="0") == 40153
    assert value(text, "kmem_vmstat_compact_stall_total") == 184312


def test_openmetrics(fragmented: RunningExporter) -> None:
    status, headers, body = fragmented.get("/metrics", {"Accept": OPENMETRICS})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(text)}  # the strict OpenMetrics parser
    assert families["kmem_vmstat_compact_stall"].type == "counter"
    assert families["kmem_vmstat_compact_stall"].samples[0].name == "kmem_vmstat_compact_stall_total"
    assert families["kmem_vmstat_compact_stall"].samples[0].value == 184312
    assert families["kmem_kernel"].type == "info"


def test_gzip(fragmented: RunningExporter) -> None:
    status, headers, body = fragmented.get("/metrics", {"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(body).decode()
    _, plain_headers, plain = fragmented.get("/metrics")
    assert "Content-Encoding" not in plain_headers
    assert set(series_values(text)) == set(series_values(plain.decode()))
    assert promtool_check_metrics(text) == ""


def test_landing_page_lists_enabled_collectors(exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *only_collectors("buddyinfo", "kernel"))
    status, headers, body = exporter.get("/")
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<li>buddyinfo</li>" in page and "<li>kernel</li>" in page
    assert "<li>vmstat</li>" not in page
    assert 'href="/metrics"' in page


def test_health_ready_and_unknown_path(fragmented: RunningExporter) -> None:
    assert fragmented.get("/-/healthy")[0] == 200
    assert fragmented.get("/-/ready")[::2] == (200, b"OK\n")
    assert fragmented.get("/nothing-here")[0] == 404
    assert fragmented.get("/metrics/")[0] == 404


def test_custom_telemetry_path(exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR, "--web.telemetry-path=/kmem/metrics")
    status, _, body = exporter.get("/kmem/metrics")
    assert status == 200 and collector_success(body.decode())["vmstat"] == 1
    assert exporter.get("/metrics")[0] == 404
    assert 'href="/kmem/metrics"' in exporter.get("/")[2].decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(exporter_factory: Callable[..., RunningExporter], sig: int) -> None:
    exporter = exporter_factory(*fixture_flags("rhel7-fragmented"), *FOUR)
    assert exporter.get("/metrics")[0] == 200
    assert exporter.stop(sig) == 0  # stop() waits at most 30 s
    assert "Traceback" not in exporter.log()


def test_broken_tree_fails_one_collector_and_logs_once(exporter_factory: Callable[..., RunningExporter]) -> None:
    exporter = exporter_factory(*fixture_flags("broken-vmstat-truncated"), *FOUR)
    for _ in range(3):
        assert collector_success(exporter.metrics()) == {"buddyinfo": 1, "vmstat": 0, "sysctl": 1, "kernel": 1}
    path = FIXTURES / "broken-vmstat-truncated" / "proc" / "vmstat"
    failures = [line for line in exporter.log().splitlines() if "collector=vmstat failed" in line]
    assert len(failures) == 1
    assert f"{path}: malformed: line 96: expected 'NAME VALUE', got 'compact_st'" in failures[0]


FRAGMENTED = FIXTURES / "rhel7-fragmented"
VMSTAT = "proc/vmstat"
CGROUPS = "proc/cgroups"


class Scrape(threading.Thread):
    def __init__(self, exporter: RunningExporter) -> None:
        super().__init__(daemon=True)
        self.exporter = exporter
        self.result: tuple[int, dict[str, str], bytes] | None = None
        self.start()

    def run(self) -> None:
        self.result = self.exporter.get("/metrics")


def test_concurrent_scrapes_share_one_collection(stuck_trees: StuckTreeFactory,
                                                 exporter_factory: Callable[..., RunningExporter]) -> None:
    tree = stuck_trees(FRAGMENTED, blocked={VMSTAT})  # proc/vmstat's reads wait until the test releases them
    exporter = exporter_factory(*tree.path_flags(), *only_collectors("buddyinfo", "vmstat"), "--log.level=debug",
                                "--collector.timeout=60s")
    first = Scrape(exporter)
    tree.wait_for_waiting_reads(VMSTAT)  # the first scrape's vmstat read is now held
    second = Scrape(exporter)
    exporter.wait_for_log("scrape joins the collection in progress")
    assert (tree.reads_started(VMSTAT), tree.reads_waiting(VMSTAT)) == (1, 1)  # the second scrape reads nothing
    tree.release(VMSTAT)
    first.join(WAIT_SECONDS)
    second.join(WAIT_SECONDS)
    assert first.result is not None and second.result is not None
    assert first.result[0] == second.result[0] == 200
    assert first.result[2] == second.result[2]  # one collection: even the durations are the same
    text = first.result[2].decode()
    assert collector_success(text) == {"buddyinfo": 1, "vmstat": 1}
    assert value(text, "kmem_vmstat_compact_stall_total") == 184312
    assert (tree.reads_started(VMSTAT), tree.reads_waiting(VMSTAT)) == (1, 0)  # vmstat was read once


def test_collector_timeout_fails_that_collector_only(stuck_trees: StuckTreeFactory,
                                                     exporter_factory: Callable[..., RunningExporter]) -> None:
    tree = stuck_trees(FRAGMENTED, blocked={VMSTAT})  # never released: the read stays stuck in the kernel
    # Long enough for buddyinfo to be read beside the stuck vmstat (from half a second on) on a loaded machine.
    exporter = exporter_factory(*tree.path_flags(), *only_collectors("buddyinfo", "vmstat"),
                                "--collector.timeout=5s")
    text = exporter.metrics()
    assert collector_success(text) == {"buddyinfo": 1, "vmstat": 0}
    assert value(text, "kmem_buddy_free_blocks", node="0", zone="Normal", order="0") == 40153
    assert "collector=vmstat failed: timed out after 5s" in exporter.log()
    assert collector_success(exporter.metrics()) == {"buddyinfo": 1, "vmstat": 0}
    assert "collector=vmstat failed: the previous collection is still running" in exporter.log()
    # The stuck read is not piled on: the second scrape started no second read of proc/vmstat.
    assert (tree.reads_started(VMSTAT), tree.reads_waiting(VMSTAT)) == (1, 1)
    # The read is still stuck; SIGTERM must end the exporter all the same.
    assert exporter.stop() == 0


def test_background_pass_stuck_at_start_neither_blocks_serving_nor_readiness_forever(
        stuck_trees: StuckTreeFactory, exporter_factory: Callable[..., RunningExporter]) -> None:
    # memcg's first pass reads proc/cgroups, here held and never released: the pass never finishes.
    tree = stuck_trees(FRAGMENTED, blocked={CGROUPS})
    started = time.monotonic()
    # exporter_factory returns once /-/ready answers 200: after the collector timeout, not never (nor before it: a
    # lower bound, which a loaded machine only makes easier to meet). The timeout leaves buddyinfo room to be read.
    exporter = exporter_factory(*tree.path_flags(), *only_collectors("buddyinfo", "memcg"), "--collector.timeout=5s")
    assert time.monotonic() - started >= 5.0
    text = exporter.metrics()
    assert collector_success(text) == {"buddyinfo": 1, "memcg": 0}
    assert "collector=memcg failed: the first background pass has not finished yet" in exporter.log()
    assert (tree.reads_started(CGROUPS), tree.reads_waiting(CGROUPS)) == (1, 1)
    assert exporter.stop() == 0


def test_ready_waits_for_the_first_background_pass(stuck_trees: StuckTreeFactory,
                                                   exporter_factory: Callable[..., RunningExporter]) -> None:
    tree = stuck_trees(FRAGMENTED, blocked={CGROUPS})
    exporter = exporter_factory(*tree.path_flags(), *only_collectors("buddyinfo", "memcg"), "--collector.timeout=60s",
                                ready=False)  # returns once it listens
    tree.wait_for_waiting_reads(CGROUPS)  # the first pass is under way and held
    assert exporter.get("/-/ready")[0] == 503, \
        "the exporter said it was ready before its first background pass finished"
    tree.release(CGROUPS)
    wait_for("the exporter to be ready", lambda: exporter.get("/-/ready")[0], lambda status: status == 200)
    assert collector_success(exporter.metrics()) == {"buddyinfo": 1, "memcg": 1}
