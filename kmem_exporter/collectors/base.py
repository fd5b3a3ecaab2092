"""What every collector shares: the base classes, file reading with clear failures, and background refresh."""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import os
import threading
import time
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Generic, Iterable, Optional, TypeVar

from prometheus_client.core import GaugeMetricFamily, Metric

from kmem_exporter.reading import VALUE_FILE_MAX_BYTES, FileTooLarge, NotARegularFile, read_bounded, read_head
from kmem_exporter.settings import Setting, parse_duration
from kmem_exporter.sources import ParseError
from kmem_exporter.sources.smaps import KERNEL_PAGE_SIZE_FIELD, parse_kernel_page_size
from kmem_exporter.threads import run_in_daemon_thread

if TYPE_CHECKING:
    from kmem_exporter.config import Config

log = logging.getLogger(__name__)

T = TypeVar("T")

# A background pass is followed by a pause of at least 500 times its duration (0.2 % of a core), up to 5 minutes: a
# walk over 65,535 memory cgroups (0.6 s) runs every 5 minutes instead of every 30 s.
BACKGROUND_CPU_SHARE = 0.002
MAX_BACKGROUND_PAUSE = 300.0

_SMAPS_HEAD_BYTES = 16 * 1024  # the first mapping's block, where KernelPageSize stands, is under 2 KiB


class CollectorError(Exception):
    """A collector could not produce its metrics. The message names the path and the reason."""


def describe_os_error(path: Path, err: OSError) -> str:
    """A one-line reason for a failed read that tells an operator what to do."""
    if isinstance(err, FileTooLarge):
        return f"{path}: {err.strerror} (--collector.max-file-size)"
    if isinstance(err, NotARegularFile):
        return f"{path}: {err.strerror}"
    if isinstance(err, FileNotFoundError):
        return f"{path}: file not found"
    if isinstance(err, PermissionError):
        return f"{path}: permission denied (run as root, or grant CAP_DAC_READ_SEARCH in a container)"
    reason = errno.errorcode.get(err.errno or 0, "error")
    return f"{path}: {reason}: {err.strerror or err}"


def parse_text(path: Path, text: str, parser: Callable[[str], T]) -> T:
    """Parse `text`, read from `path`; a parse error becomes a CollectorError naming the path."""
    try:
        return parser(text)
    except ParseError as err:
        raise CollectorError(f"{path}: malformed: {err}") from None


Absent = tuple[type[OSError], ...]  # read errors that mean "the file is not there" to a caller


class _Entry:
    """One file's parse within a KernelFiles: computed by the first collector that asks, awaited by the others."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: object = None
        self.error: Optional[CollectorError] = None


class KernelFiles:
    """The kernel files of one collection (a scrape, or one background pass).

    Each file is read once, with a size cap, and parsed once per parser; collectors that need the same file (slabinfo
    and conntrack, buddyinfo and extfrag) share the result. Thread-safe: when a stalled collector hands the others to
    another thread, a collector that asks for a file another one is reading waits for that read.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: dict[tuple[Path, Callable[[str], object], Absent], _Entry] = {}

    def parse(self, path: Path, parser: Callable[[str], T], max_bytes: Optional[int] = None) -> T:
        """`parser` applied to the text of `path`; CollectorError naming the path when it cannot be read or parsed."""
        result = self._parse(path, parser, (), max_bytes)
        assert result is not None
        return result

    def parse_optional(self, path: Path, parser: Callable[[str], T], max_bytes: Optional[int] = None,
                       absent: Absent = (FileNotFoundError,)) -> Optional[T]:
        """Like parse, but None when the file does not exist (a kernel feature that is absent is not an error), or
        when reading it fails with another of the `absent` errors."""
        return self._parse(path, parser, absent, max_bytes)

    def parse_value(self, path: Path, parser: Callable[[str], T]) -> T:
        """`parse` for a file that holds one value or line (a sysctl, osrelease, cmdline): a small cap."""
        return self.parse(path, parser, VALUE_FILE_MAX_BYTES)

    def parse_optional_value(self, path: Path, parser: Callable[[str], T]) -> Optional[T]:
        """`parse_optional` for a file that holds one value or line."""
        return self.parse_optional(path, parser, VALUE_FILE_MAX_BYTES)

    def _parse(self, path: Path, parser: Callable[[str], T], absent: Absent, max_bytes: Optional[int]) -> Optional[T]:
        key = (path, parser, absent)
        with self._lock:
            entry = self._entries.get(key)
            first = entry is None
            if entry is None:
                entry = self._entries[key] = _Entry()
        if first:
            try:
                entry.value = self._read_and_parse(path, parser, absent, max_bytes or self.max_bytes)
            except CollectorError as err:
                entry.error = err
            finally:
                entry.done.set()
        else:
            entry.done.wait()
        if entry.error is not None:
            raise CollectorError(str(entry.error))
        return entry.value  # type: ignore[return-value]

    @staticmethod
    def _read_and_parse(path: Path, parser: Callable[[str], T], absent: Absent, max_bytes: int) -> Optional[T]:
        try:
            text = read_bounded(path, max_bytes)
        except OSError as err:
            if isinstance(err, absent):
                return None
            raise CollectorError(describe_os_error(path, err)) from None
        return parse_text(path, text, parser)


def read_page_size(procfs: Path) -> int:
    """The page size, in bytes, of the kernel whose procfs is at `procfs`.

    It is the first `KernelPageSize:` line of `<procfs>/self/smaps`, the mappings of the process reading it (on a
    real host the exporter itself, on that kernel; only the head of the file is read). When that file is absent or
    has no such line in its head, it is this process's page size.
    """
    path = procfs / "self" / "smaps"
    try:
        head = read_head(path, _SMAPS_HEAD_BYTES)
    except FileNotFoundError:
        head = ""
    except OSError as err:
        raise CollectorError(describe_os_error(path, err)) from None
    lines = io.StringIO(head, newline="\n")  # split on "\n" only, the ends kept
    line = next((line for line in lines if line.startswith(KERNEL_PAGE_SIZE_FIELD)), None)
    if line is None:
        return os.sysconf("SC_PAGE_SIZE")
    return parse_text(path, line, parse_kernel_page_size)


class Collector:
    """One area of metrics. `collect()` is blocking and runs off the event loop; it raises CollectorError on failure."""

    name: ClassVar[str]
    description: ClassVar[str]
    default_enabled: ClassVar[bool] = True
    options: ClassVar[tuple[Setting, ...]] = ()

    def __init__(self, config: "Config") -> None:
        self.config = config

    def option(self, suffix: str) -> object:
        """The value of this collector's option `collector.<name>.<suffix>`."""
        return self.config.option(f"collector.{self.name}.{suffix}")

    @cached_property
    def page_size(self) -> int:
        """The kernel's page size in bytes (see `read_page_size`), read at the first use."""
        return read_page_size(self.config.procfs)

    def collect(self, files: KernelFiles) -> Iterable[Metric]:
        """The collector's metric families, from the files of this collection."""
        raise NotImplementedError

    async def start(self) -> None:
        """Begin background work, if the collector has any. Called once before the first scrape; it must not wait
        for slow work (`first_result` does)."""

    async def first_result(self) -> None:
        """Wait until the collector has something to serve: at once, unless it works in the background."""

    async def stop(self) -> None:
        """End background work."""


def interval_option(collector_name: str, default: str, what: str) -> Setting:
    return Setting(
        f"collector.{collector_name}.interval",
        parse_duration,
        default,
        f"How often the background {what} runs.",
        metavar="DURATION",
    )


class BackgroundCollector(Collector, Generic[T]):
    """A collector whose slow work (`refresh`) runs in the background on its own interval.

    A scrape never waits for a refresh: it serves the latest result together with when that result was taken and
    how long the refresh took. Subclasses declare an `interval` option (see `interval_option`).
    """

    def __init__(self, config: "Config") -> None:
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
        crowded node), so that a background collector keeps to BACKGROUND_CPU_SHARE of a core; never more than
        MAX_BACKGROUND_PAUSE unless the interval says so."""
        return max(self.interval, min(duration / BACKGROUND_CPU_SHARE, MAX_BACKGROUND_PAUSE))

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
        yield from self.metrics(self._result)
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
