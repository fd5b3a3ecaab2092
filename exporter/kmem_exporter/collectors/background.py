"""Collectors whose slow work runs in the background on its own interval; a scrape serves the latest result."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Generic, Iterable, Optional, TypeVar

from prometheus_client.core import GaugeMetricFamily, Metric

from kmem_exporter.collectors.base import Collector, CollectorSettings
from kmem_exporter.collectors.errors import CollectorError
from kmem_exporter.collectors.kernel_files import KernelFiles
from kmem_exporter.threads import run_in_daemon_thread

log = logging.getLogger(__name__)

T = TypeVar("T")

# A background pass is followed by a pause of at least 500 times its duration (0.2 % of a core), up to 5 minutes: a
# walk over 65,535 memory cgroups (0.6 s) runs every 5 minutes instead of every 30 s.
BACKGROUND_CPU_SHARE = 0.002


MAX_BACKGROUND_PAUSE = 300.0


class BackgroundCollector(Collector, Generic[T]):
    """A collector whose slow work (`refresh`) runs in the background on its own interval.

    A scrape never waits for a refresh: it serves the latest result together with when that result was taken and
    how long the refresh took. Subclasses declare an `interval` option (see `interval_option`).
    """

    def __init__(self, config: CollectorSettings) -> None:
        super().__init__(config)
        self._result: Optional[T] = None
        self._error: Optional[str] = None
        self._finished_at = 0.0
        self._duration = 0.0
        self._task: Optional[asyncio.Task[None]] = None
        self._first_pass: Optional[asyncio.Event] = None

    def refresh(self, files: KernelFiles) -> T:
        """The slow, blocking pass, reading through `files` (new for each pass). Raises CollectorError on failure."""
        raise NotImplementedError

    def metrics(self, result: T) -> Iterable[Metric]:
        """The metric families for one refresh result."""
        raise NotImplementedError

    def current(self, result: T, files: KernelFiles) -> T:
        """The latest refresh result as a scrape serves it: a subclass may bring up to date what a scrape can read
        cheaply (through `files`, the scrape's). Raises CollectorError on failure."""
        return result

    @property
    def interval(self) -> float:
        return float(self.option("interval"))  # type: ignore[arg-type]

    def refresh_once(self) -> None:
        """Run one pass and keep its result or its error."""
        started = time.monotonic()
        try:
            result = self.refresh(KernelFiles(self.config.max_file_bytes))
        except CollectorError as err:
            self._error = str(err)
        except Exception as err:  # a bug must not kill the loop; it is reported like any failure
            log.exception("collector=%s background pass failed", self.name)
            self._error = f"unexpected error: {err!r}"
        else:
            self._result, self._error = result, None
        self._duration = time.monotonic() - started
        self._finished_at = time.time()

    async def start(self) -> None:
        self._first_pass = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name=f"{self.name}-refresh")

    async def first_result(self) -> None:
        if self._first_pass is not None:
            await self._first_pass.wait()

    async def _loop(self) -> None:
        assert self._first_pass is not None
        while True:
            # A pass stuck in the kernel holds up this loop only: scrapes go on serving the last result, whose
            # age kmem_background_pass_timestamp_seconds shows.
            await run_in_daemon_thread(self.refresh_once, f"refresh-{self.name}")
            self._first_pass.set()
            await asyncio.sleep(self.pause_after(self._duration))

    def pause_after(self, duration: float) -> float:
        """How long to wait after a pass that took `duration`: the interval, or longer when passes are slow (a
        crowded node), so that a background collector keeps to its share of a core (`cpu_share`); never more than
        MAX_BACKGROUND_PAUSE unless the interval says so."""
        return max(self.interval, min(duration / self.cpu_share(self._result), MAX_BACKGROUND_PAUSE))

    def cpu_share(self, result: Optional[T]) -> float:
        """The share of a core the passes may take after `result` (None before the first); a subclass may allow
        more when the result shows the node close to a failure."""
        return BACKGROUND_CPU_SHARE

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        if self._error is not None:
            raise CollectorError(self._error)
        if self._result is None:
            raise CollectorError("the first background pass has not finished yet")
        yield from self.metrics(self.current(self._result, files))
        finished = GaugeMetricFamily(
            "kmem_background_pass_timestamp_seconds",
            "When the latest background pass of a collector finished, as a Unix time.",
            labels=["collector"],
        )
        finished.add_metric([self.name], self._finished_at)
        yield finished
        duration = GaugeMetricFamily(
            "kmem_background_pass_duration_seconds",
            "How long the latest background pass of a collector took.",
            labels=["collector"],
        )
        duration.add_metric([self.name], self._duration)
        yield duration
