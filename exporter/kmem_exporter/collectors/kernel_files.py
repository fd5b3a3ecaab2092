"""The kernel files of one collection: each read once with a size cap, parsed once per parser, shared."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Callable, Optional, TypeVar

from kmem_exporter.collectors.errors import CollectorError, parse_text
from kmem_exporter.parsers.smaps import KERNEL_PAGE_SIZE_FIELD, parse_kernel_page_size
from kmem_exporter.reading.bounded import VALUE_FILE_MAX_BYTES, describe_os_error, read_bounded, read_head

T = TypeVar("T")

_SMAPS_HEAD_BYTES = 16 * 1024  # the first mapping's block, where KernelPageSize stands, is under 2 KiB


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
        if result is None:  # only an absent file gives None, and none is absent here
            raise CollectorError(f"{path}: no result")
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
            except MemoryError:  # every collector sharing the file fails with the same reason
                entry.error = CollectorError(f"{path}: out of memory while reading or parsing it (MemoryError)")
            except Exception as err:
                entry.error = CollectorError(f"{path}: unexpected error while parsing it: {err!r}")
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
