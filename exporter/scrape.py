"""Runs the enabled collectors for a scrape: off the event loop, each with a timeout, failures kept to themselves.

Scrapes that arrive while a collection is running share that collection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.samples import Sample

from exporter import __version__
from exporter.collectors.base import Collector, CollectorError
from exporter.threads import run_in_daemon_thread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectorOutcome:
    name: str
    metrics: tuple[Metric, ...]
    duration: float
    error: Optional[str]


class Scraper:
    def __init__(self, collectors: Sequence[Collector], timeout: float) -> None:
        self.collectors = tuple(collectors)
        self.timeout = timeout
        self._running: dict[str, asyncio.Future[CollectorOutcome]] = {}
        self._in_flight: Optional[asyncio.Future[list[Metric]]] = None
        self._reported_errors: dict[str, str] = {}

    async def start(self) -> None:
        await asyncio.gather(*(c.start() for c in self.collectors))

    async def wait_ready(self) -> None:
        """Wait until every collector has something to serve (background collectors: their first pass), but no
        longer than the collector timeout; a collector still without a result then fails in the scrapes."""
        waits = [asyncio.ensure_future(c.first_result()) for c in self.collectors]
        if not waits:
            return
        _, pending = await asyncio.wait(waits, timeout=self.timeout)
        for wait in pending:
            wait.cancel()

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.collectors), return_exceptions=True)

    async def scrape(self) -> list[Metric]:
        """All metric families for one scrape; concurrent callers share one collection."""
        if self._in_flight is None:
            self._in_flight = asyncio.ensure_future(self._collect_all())
            self._in_flight.add_done_callback(self._clear_in_flight)
        else:
            log.debug("scrape joins the collection in progress")
        return await asyncio.shield(self._in_flight)

    def failures(self) -> dict[str, str]:
        """The collectors that failed their last collection, with the reason each gave."""
        return dict(self._reported_errors)

    def _clear_in_flight(self, _: "asyncio.Future[list[Metric]]") -> None:
        self._in_flight = None

    async def _collect_all(self) -> list[Metric]:
        outcomes = await asyncio.gather(*(self._collect_one(c) for c in self.collectors))
        for outcome in outcomes:
            self._report(outcome)
        return merge_families([m for o in outcomes for m in o.metrics]) + self_metrics(outcomes)

    async def _collect_one(self, collector: Collector) -> CollectorOutcome:
        started = time.monotonic()
        previous = self._running.get(collector.name)
        if previous is not None and not previous.done():
            # A read stuck in the kernel keeps its thread; don't pile more threads onto it.
            return CollectorOutcome(collector.name, (), 0.0, "the previous collection is still running")
        future = run_in_daemon_thread(lambda: _run_collector(collector), f"collect-{collector.name}")
        self._running[collector.name] = future
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except asyncio.TimeoutError:
            return CollectorOutcome(collector.name, (), time.monotonic() - started,
                                    f"timed out after {self.timeout:g}s")

    def _report(self, outcome: CollectorOutcome) -> None:
        """Log a failure once (not every scrape), and the recovery."""
        previous = self._reported_errors.get(outcome.name)
        if outcome.error is None:
            if previous is not None:
                log.info("collector=%s recovered", outcome.name)
                del self._reported_errors[outcome.name]
        elif outcome.error != previous:
            log.error("collector=%s failed: %s", outcome.name, outcome.error)
            self._reported_errors[outcome.name] = outcome.error


def _run_collector(collector: Collector) -> CollectorOutcome:
    started = time.monotonic()
    try:
        metrics = tuple(collector.collect())
        error = None
    except CollectorError as err:
        metrics, error = (), str(err)
    except Exception as err:  # a bug in one collector must not take the scrape down
        log.exception("collector=%s raised an unexpected error", collector.name)
        metrics, error = (), f"unexpected error: {err!r}"
    return CollectorOutcome(collector.name, metrics, time.monotonic() - started, error)


def merge_families(families: Iterable[Metric]) -> list[Metric]:
    """One family per name (collectors may share a family such as the background-pass gauges), duplicate series
    dropped, samples in a stable order."""
    merged: dict[str, Metric] = {}
    for family in families:
        target = merged.get(family.name)
        if target is None:
            target = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
        target.samples.extend(family.samples)
    for family in merged.values():
        unique = {(s.name, tuple(sorted(s.labels.items()))): s for s in family.samples}
        family.samples = sorted(unique.values(), key=_sample_order)
    return sorted(merged.values(), key=lambda f: f.name)


def _sample_order(sample: Sample) -> tuple[object, ...]:
    return (sample.name, tuple((k, _natural(v)) for k, v in sorted(sample.labels.items())))


def _natural(value: str) -> tuple[int, object]:
    """Numbers in numeric order (order 2 before order 10), then everything else by text."""
    return (0, int(value)) if value.isdigit() else (1, value)


def self_metrics(outcomes: Sequence[CollectorOutcome]) -> list[Metric]:
    success = GaugeMetricFamily("kmem_collector_success", "1 if the collector's last scrape succeeded, 0 if it failed.",
                                labels=["collector"])
    duration = GaugeMetricFamily("kmem_collector_duration_seconds", "How long the collector took in the last scrape.",
                                 labels=["collector"])
    for outcome in sorted(outcomes, key=lambda o: o.name):
        success.add_metric([outcome.name], 0.0 if outcome.error else 1.0)
        duration.add_metric([outcome.name], outcome.duration)
    build = InfoMetricFamily("kmem_exporter_build", "The exporter's version; the value is always 1.",
                             value={"version": __version__})
    return [success, duration, build]
