"""The scrape coordinator on its own, with collectors defined here whose timing the test controls."""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
from typing import Iterable

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric

from conftest import WAIT_SECONDS
from kmem_exporter.collectors.base import Collector
from kmem_exporter.collectors.errors import CollectorError
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.config import Config
from kmem_exporter.exposition import OPENMETRICS, TEXT
from kmem_exporter.families import RowFamily
from kmem_exporter.scrape import scraper as scraper_module
from kmem_exporter.scrape.collection import Collection
from kmem_exporter.scrape.scraper import Scraper

MAX_BYTES = 1 << 20

CONFIG = Config.from_values({})


class Gate(Collector):
    """Blocks in collect() until the test opens the gate; counts its calls."""

    name = "gate"
    description = "a collector the test holds up"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.calls = 0
        self.entered = threading.Event()
        self.gate = threading.Event()

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        self.calls += 1
        self.entered.set()
        self.gate.wait(timeout=2 * WAIT_SECONDS)
        return [GaugeMetricFamily("kmem_test_gate", "Calls so far.", value=self.calls)]


class Quick(Collector):
    name = "quick"
    description = "a collector that answers at once"

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        return [GaugeMetricFamily("kmem_test_quick", "Always 1.", value=1)]


class Failing(Collector):
    name = "failing"
    description = "a collector whose failure the test sets"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.error: Exception | None = CollectorError("/proc/test: malformed: line 1")

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        if self.error is not None:
            raise self.error
        return [GaugeMetricFamily("kmem_test_failing", "Always 1.", value=1)]


def success(collection: Collection) -> dict[str, float]:
    family = next(f for f in collection.families if f.name == "kmem_collector_success")
    return {s.labels["collector"]: s.value for s in family.samples}


async def wait_for(event: threading.Event) -> None:
    called = await asyncio.get_running_loop().run_in_executor(None, event.wait, WAIT_SECONDS)
    assert called, "the collector was never called"


async def test_concurrent_scrapes_share_one_collection() -> None:
    gate = Gate(CONFIG)
    scraper = Scraper([gate, Quick(CONFIG)], timeout=60, max_file_bytes=MAX_BYTES)
    first = asyncio.create_task(scraper.scrape())
    await wait_for(gate.entered)  # the collection is under way and held at the gate
    second = asyncio.create_task(scraper.scrape())
    await asyncio.sleep(0)  # let the second scrape reach the coordinator while the first is held
    gate.gate.set()
    one, two = await asyncio.gather(first, second)
    assert gate.calls == 1
    assert one is two
    assert success(one) == {"gate": 1, "quick": 1}
    third = await scraper.scrape()  # once finished, the next scrape collects afresh
    assert gate.calls == 2 and third is not one
    await scraper.stop()


async def test_slow_collector_times_out_alone_and_is_not_piled_on() -> None:
    gate = Gate(CONFIG)
    # Long enough for the quick collector to run beside the stuck one (from half a second on) on a loaded machine.
    scraper = Scraper([gate, Quick(CONFIG)], timeout=3, max_file_bytes=MAX_BYTES)
    collection = await scraper.scrape()
    assert success(collection) == {"gate": 0, "quick": 1}
    assert "kmem_test_quick" in {f.name for f in collection.families}
    assert "kmem_test_gate" not in {f.name for f in collection.families}
    # Still stuck: the next scrape does not start a second read of the same collector.
    assert success(await scraper.scrape()) == {"gate": 0, "quick": 1}
    assert gate.calls == 1
    gate.gate.set()

    async def collects_the_gate_again() -> bool:  # the stuck read, now let go, finishes; a scrape then collects it
        collection = await scraper.scrape()
        if success(collection) != {"gate": 1, "quick": 1}:
            assert collection.failures["gate"] == "the previous collection is still running"
            return False
        return True

    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while not await collects_the_gate_again():
        assert asyncio.get_running_loop().time() < deadline, "the stuck collector was never collected again"
        await asyncio.sleep(0.01)
    assert gate.calls == 2
    await scraper.stop()


async def test_failure_is_logged_once_until_it_changes(caplog: pytest.LogCaptureFixture) -> None:
    failing = Failing(CONFIG)
    scraper = Scraper([failing, Quick(CONFIG)], timeout=10, max_file_bytes=MAX_BYTES)
    with caplog.at_level(logging.INFO, logger="kmem_exporter.scrape.scraper"):
        for _ in range(3):
            assert success(await scraper.scrape()) == {"failing": 0, "quick": 1}
        failing.error = CollectorError("/proc/test: file not found")
        await scraper.scrape()
        failing.error = None
        assert success(await scraper.scrape()) == {"failing": 1, "quick": 1}
        failing.error = ValueError("a bug")
        assert success(await scraper.scrape()) == {"failing": 0, "quick": 1}
    messages = [r.getMessage() for r in caplog.records if r.name == "kmem_exporter.scrape.scraper"
                and not r.getMessage().startswith("collector=failing raised")]
    assert messages == [
        "collector=failing failed: /proc/test: malformed: line 1",
        "collector=failing failed: /proc/test: file not found",
        "collector=failing recovered",
        "collector=failing failed: unexpected error: ValueError('a bug')",
    ]
    await scraper.stop()


async def test_a_collection_is_rendered_once_per_format_whatever_the_requests() -> None:
    gate = Gate(CONFIG)
    scraper = Scraper([gate, Quick(CONFIG)], timeout=60, max_file_bytes=MAX_BYTES)
    scrapes = [asyncio.create_task(scraper.scrape()) for _ in range(3)]
    await wait_for(gate.entered)
    gate.gate.set()
    collections = await asyncio.gather(*scrapes)
    assert all(c is collections[0] for c in collections)
    collection = collections[0]
    texts = await asyncio.gather(*(collection.body(TEXT) for _ in range(5)))
    assert all(t is texts[0] for t in texts)  # one rendering, the same bytes for every request
    zipped = await asyncio.gather(*(collection.body(TEXT, gzipped=True) for _ in range(5)))
    assert all(z is zipped[0] for z in zipped) and gzip.decompress(zipped[0]) == texts[0]
    openmetrics = await collection.body(OPENMETRICS)
    assert openmetrics.endswith(b"# EOF\n") and openmetrics is not texts[0]
    assert b"kmem_test_gate 1.0\n" in texts[0]
    await scraper.stop()


class Unexportable(Collector):
    name = "unexportable"
    description = "a collector whose families the exposition could not write"

    def __init__(self, config: Config, family: Metric) -> None:
        super().__init__(config)
        self.family = family

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        return [self.family]


def twice() -> Metric:
    family = GaugeMetricFamily("kmem_test_twice", "The same series twice.", labels=["zone"])
    family.add_metric(["Normal"], 1)
    family.add_metric(["Normal"], 2)
    return family


@pytest.mark.parametrize("family, reason", [
    (GaugeMetricFamily("kmem_test_huge", "Beyond any float.", value=10**400), "cannot be exported"),
    (GaugeMetricFamily("kmem_test_text", "No number.", value="many"), "cannot be exported"),  # type: ignore[arg-type]
    (twice(), "listed twice"),
    (RowFamily.single("kmem_test_huge_row", "Beyond any float.", "gauge", 2**1024), "cannot be exported"),
    (RowFamily("kmem_test_huge_rows", "Beyond any float.", "gauge", ("cache",), [("a",), ("b",)], [1, 10**400]),
     "too large"),
    (RowFamily("kmem_test_text_row", "No number.", "gauge", ("cache",), [("a",)], ["many"]),  # type: ignore[list-item]
     "not a number"),
    (RowFamily("kmem_test_rows_twice", "The same series twice.", "gauge", ("zone",), [("DMA",), ("DMA",)], [1, 2]),
     "listed twice"),
    (RowFamily("kmem_test_row_label", "Label no string.", "gauge", ("node",), [(0,)], [1]),  # type: ignore[list-item]
     "not a string"),
    (RowFamily("kmem_test_row_width", "Too few label values.", "gauge", ("node", "zone"), [("0",)], [1]),
     "label values"),
    (RowFamily("kmem_test_row_count", "More values than label sets.", "gauge", ("node",), [("0",)], [1, 2]),
     "label sets"),
])
async def test_what_the_exposition_cannot_write_fails_its_collector_alone(family: Metric, reason: str) -> None:
    scraper = Scraper([Unexportable(CONFIG, family), Quick(CONFIG)], timeout=10, max_file_bytes=MAX_BYTES)
    collection = await scraper.scrape()
    assert success(collection) == {"unexportable": 0, "quick": 1}
    assert reason in collection.failures["unexportable"]
    assert b"kmem_test_quick 1.0\n" in await collection.body(TEXT)
    await scraper.stop()


async def test_the_collecting_thread_writes_the_asked_format() -> None:
    scraper = Scraper([Quick(CONFIG)], timeout=10, max_file_bytes=MAX_BYTES)
    collection = await scraper.scrape(OPENMETRICS, gzipped=True)
    ready = collection.body(OPENMETRICS, gzipped=True)
    assert ready.done()  # written before the collection was handed over, not on request
    assert gzip.decompress(ready.result()) == collection.render(OPENMETRICS)
    assert not collection.body(TEXT).done()  # another format is written when asked for
    assert await collection.body(TEXT) == collection.render(TEXT)
    await scraper.stop()


async def test_one_thread_runs_the_collectors_in_turn_unless_one_stalls(monkeypatch: pytest.MonkeyPatch) -> None:
    # None stalls here: a collector is taken as stalled only after a minute (not half a second, which a loaded
    # machine can hold up a thread for; the stall is at most a quarter of the timeout).
    monkeypatch.setattr(scraper_module, "STALL_SECONDS", WAIT_SECONDS)
    threads: list[str] = []

    class Recording(Quick):
        def collect(self, files: KernelFiles) -> Iterable[Metric]:
            threads.append(threading.current_thread().name)
            return []

    recorders = [type(f"Recording{i}", (Recording,), {"name": f"recording{i}"})(CONFIG) for i in range(5)]
    scraper = Scraper(recorders, timeout=4 * WAIT_SECONDS, max_file_bytes=MAX_BYTES)
    await scraper.scrape()
    assert len(threads) == 5 and len(set(threads)) == 1
    await scraper.stop()
