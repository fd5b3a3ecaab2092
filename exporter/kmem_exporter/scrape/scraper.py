"""Runs the enabled collectors for a scrape: off the event loop, each with a timeout, failures kept to themselves.

Scrapes that arrive while a collection is running share that collection (see collection.py), also when they first
wait for a request slot and the collection has ended meanwhile: an answer always comes from a collection that was
under way when its request arrived, or that started after.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import deque
from typing import Callable, Iterable, Optional, Sequence

from prometheus_client.core import Metric

from kmem_exporter.collectors.base import Collector
from kmem_exporter.collectors.errors import CollectorError
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.exposition import TEXT, Format
from kmem_exporter.scrape.assembly import bound_series, check_exportable, merge_families, self_metrics
from kmem_exporter.scrape.collection import Collection, CollectorOutcome
from kmem_exporter.threads import DaemonPool

log = logging.getLogger(__name__)

STALL_SECONDS = 0.5
MAX_SERIES = 100_000  # series in one collection (--collector.max-series)


class Scraper:
    def __init__(self, collectors: Sequence[Collector], timeout: float, max_file_bytes: int,
                 extra_families: Callable[[], Iterable[Metric]] = tuple, max_series: int = MAX_SERIES) -> None:
        """`extra_families` gives families that are not the kernel's, added to every collection (the exporter's
        own process metrics when serving)."""
        self.collectors = tuple(collectors)
        self._extra_families = extra_families
        self.timeout = timeout
        self.max_file_bytes = max_file_bytes
        self.max_series = max_series
        self._pool = DaemonPool("collect")
        self._busy = _Busy()
        # A collector running longer than this hands the ones after it to another thread, so that a read stuck in
        # the kernel delays nobody else; in the usual case, one thread runs every collector in turn.
        self._stall = min(STALL_SECONDS, timeout / 4)
        self._in_flight: Optional[asyncio.Future[Collection]] = None
        self._started = 0  # collections started so far: the number of the one in flight, or of the last one
        self.latest: Optional[Collection] = None  # the last collection made, for readers that need not a new one
        self._latest_number = 0
        self._reported_errors: dict[str, str] = {}

    async def start(self) -> None:
        """Start every collector's background work; a start that takes longer than the collector timeout is left
        to finish on its own (the collector then fails its scrapes until it has)."""
        starts = [asyncio.ensure_future(c.start()) for c in self.collectors]
        if starts:
            _, pending = await asyncio.wait(starts, timeout=self.timeout)
            for start in pending:
                log.error("a collector is still starting after %gs; serving without waiting for it", self.timeout)

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

    def in_progress(self) -> Optional[int]:
        """The number of the collection under way, if any (for `scrape`'s `arrived_during`)."""
        return self._started if self._in_flight is not None else None

    async def scrape(self, form: Format = TEXT, gzipped: bool = False, arrived_during: Optional[int] = None
                     ) -> Collection:
        """One collection; concurrent callers share it. A new collection is written in `form` (and gzipped when
        asked) by the thread that collected it, ready for `body()`. `arrived_during`: the collection under way when
        the caller's request arrived (`in_progress()` then); the caller is answered from it even when it has ended
        since, unless a later one has."""
        if arrived_during is not None and arrived_during == self._latest_number and self.latest is not None:
            log.debug("scrape answered from the collection under way when it arrived")
            return self.latest
        if self._in_flight is None:
            self._started += 1
            self._in_flight = asyncio.ensure_future(self._collect_all(form, gzipped, self._started))
            self._in_flight.add_done_callback(self._clear_in_flight)
        else:
            log.debug("scrape joins the collection in progress")
        return await asyncio.shield(self._in_flight)

    def _clear_in_flight(self, _: "asyncio.Future[Collection]") -> None:
        self._in_flight = None

    async def _collect_all(self, form: Format, gzipped: bool, number: int) -> Collection:
        runnable = [c for c in self.collectors if not self._busy.taken(c.name)]
        # In the usual case (every collector runnable, none stalled) the last worker assembles the collection and
        # writes it out itself: the families are never handed between threads, and so between CPUs.
        assemble = functools.partial(self._assemble, form=form, gzipped=gzipped)
        run = _Run(runnable, self._busy, KernelFiles(self.max_file_bytes),
                   assemble if len(runnable) == len(self.collectors) else None)
        workers = [self._pool.submit(run.work)]
        deadline = time.monotonic() + self.timeout
        while not run.finished() and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(workers, timeout=min(left, self._stall), return_when=asyncio.FIRST_COMPLETED)
            workers = [w for w in workers if not w.done()]
            if run.needs_another_worker(self._stall):
                log.debug("a collector has been running for over %gs; the others go on in another thread", self._stall)
                workers.append(self._pool.submit(run.work))
        if run.assembled is not None:
            outcomes, collection = run.assembled
        else:
            outcomes = [run.outcome(c, self.timeout) for c in self.collectors]
            collection = self._assemble(outcomes)
        for outcome in self._outcomes_of(collection, outcomes):
            self._report(outcome)
        self.latest, self._latest_number = collection, number
        return collection

    def _assemble(self, outcomes: Sequence[CollectorOutcome], form: Optional[Format] = None,
                  gzipped: bool = False) -> Collection:
        outcomes = bound_series(outcomes, self.max_series)
        families = merge_families([*(m for o in outcomes for m in o.metrics), *self_metrics(outcomes),
                                   *self._extra_families()])
        failures = {o.name: o.error for o in outcomes if o.error is not None}
        collection = Collection(families, failures, self._pool)
        if form is not None:
            collection.prerender(form, gzipped)
        return collection

    def _outcomes_of(self, collection: Collection, outcomes: Sequence[CollectorOutcome]) -> list[CollectorOutcome]:
        """The outcomes as the collection has them (a collector above the series bound failed there)."""
        return [CollectorOutcome(o.name, o.metrics, o.duration, collection.failures[o.name])
                if o.name in collection.failures and o.error is None else o for o in outcomes]

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


class _Busy:
    """The collectors running now, in any thread: a collector stuck in the kernel is not started again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: set[str] = set()

    def taken(self, name: str) -> bool:
        with self._lock:
            return name in self._names

    def take(self, name: str) -> None:
        with self._lock:
            self._names.add(name)

    def release(self, name: str) -> None:
        with self._lock:
            self._names.discard(name)


class _Run:
    """The collectors of one collection, taken in turn by a worker thread (by another one too when a collector
    stalls its worker); each outcome is kept as it comes."""

    def __init__(self, collectors: Sequence[Collector], busy: _Busy, files: KernelFiles,
                 assemble: Optional[Callable[[Sequence[CollectorOutcome]], Collection]] = None) -> None:
        self._lock = threading.Lock()
        self._collectors = tuple(collectors)
        self._waiting = deque(collectors)
        self._assemble = assemble
        # Set by the worker that finished the last collector, when `assemble` is given: the outcomes in collector
        # order and the collection made of them.
        self.assembled: Optional[tuple[list[CollectorOutcome], Collection]] = None
        self._assembling = False
        self._running: dict[str, float] = {}  # collector -> when it started
        self._outcomes: dict[str, CollectorOutcome] = {}
        self._busy = busy
        self._files = files
        self._started = time.monotonic()

    def work(self) -> None:
        """Run waiting collectors until none is left (in a worker thread)."""
        while True:
            with self._lock:
                if not self._waiting:
                    assemble = self._assemble if len(self._outcomes) == len(self._collectors) else None
                    self._assemble = None
                    self._assembling = assemble is not None
                    break
                collector = self._waiting.popleft()
                self._running[collector.name] = time.monotonic()
            self._busy.take(collector.name)
            try:
                outcome = _run_collector(collector, self._files)
            finally:
                self._busy.release(collector.name)
            with self._lock:
                del self._running[collector.name]
                self._outcomes[collector.name] = outcome
        if assemble is not None:
            outcomes = [self._outcomes[c.name] for c in self._collectors]
            try:
                self.assembled = (outcomes, assemble(outcomes))
            except Exception:  # noqa: BLE001 - the event loop assembles it instead
                log.exception("assembling the collection failed in its worker")
            with self._lock:
                self._assembling = False

    def finished(self) -> bool:
        with self._lock:
            return len(self._outcomes) == len(self._collectors) and not self._assembling

    def needs_another_worker(self, stall: float) -> bool:
        """Whether collectors wait while every one that runs has been running for `stall` seconds or more."""
        now = time.monotonic()
        with self._lock:
            return bool(self._waiting) and all(now - started >= stall for started in self._running.values())

    def outcome(self, collector: Collector, timeout: float) -> CollectorOutcome:
        with self._lock:
            outcome = self._outcomes.get(collector.name)
            started = self._running.get(collector.name)
            waiting = collector in self._waiting
        if outcome is not None:
            return outcome
        if started is None and not waiting:
            # A read stuck in the kernel keeps its thread; don't pile more threads onto it.
            return CollectorOutcome(collector.name, (), 0.0, "the previous collection is still running")
        return CollectorOutcome(collector.name, (), time.monotonic() - (started or self._started),
                                f"timed out after {timeout:g}s")


def _run_collector(collector: Collector, files: KernelFiles) -> CollectorOutcome:
    started = time.monotonic()
    try:
        metrics = tuple(collector.collect(files))
        check_exportable(metrics)
        error = None
    except CollectorError as err:
        metrics, error = (), str(err)
    except MemoryError:
        metrics, error = (), "out of memory (MemoryError)"
    except Exception as err:  # a bug in one collector must not take the scrape down
        log.exception("collector=%s raised an unexpected error", collector.name)
        metrics, error = (), f"unexpected error: {err!r}"
    return CollectorOutcome(collector.name, metrics, time.monotonic() - started, error)
