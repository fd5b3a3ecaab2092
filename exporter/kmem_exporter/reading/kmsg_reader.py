"""Reads the kernel log device (/dev/kmsg) in a background thread and hands every record to a callback.

- Starts at the end of the log, so a restarted exporter never counts old messages again.
- /dev/kmsg returns one record per read(); the kernel's records are at most 8 KiB, the buffer is twice that.
- read() fails with EPIPE when the kernel overwrote records before they were read; reading goes on from the oldest
  record still there, and the gap in sequence numbers is counted as lost.
- The device is opened non-blocking and waited on with poll() together with a wake-up pipe, so stop() returns at
  once instead of waiting for the next kernel message.
- If reading fails, the reader closes the device and opens it again after a back-off (doubling, up to a limit),
  and resumes after the last record it had read.
- A regular file or a pipe in the record format works too (tests, benchmarks): records are then split out of the
  stream, and the end of a file is polled like `tail -f`.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from kmem_exporter.reading.bounded import describe_os_error
from kmem_exporter.parsers import ParseError
from kmem_exporter.parsers.kmsg import KmsgRecord, parse_record, split_records

log = logging.getLogger(__name__)

READ_SIZE = 16384
EOF_POLL_SECONDS = 0.25

ReadFunction = Callable[[int, int], bytes]


@dataclass(frozen=True)
class ReaderState:
    up: bool
    records_read: int
    records_lost: int
    restarts: int
    error: Optional[str]


def describe_open_error(path: Path, err: OSError) -> str:
    """Why the kernel log cannot be read, and what to do about it."""
    if isinstance(err, FileNotFoundError):
        return (f"{path}: not found (no kernel log device, as in some containers: mount the host's /dev/kmsg, "
                f"or disable this collector with --no-collector.kernel_log)")
    if isinstance(err, PermissionError):
        return (f"{path}: permission denied (reading the kernel log needs root, or CAP_SYSLOG when "
                f"kernel.dmesg_restrict=1)")
    return describe_os_error(path, err)


class KmsgReader:
    """Reads records from `path` and calls `handle` for each, in its own thread.

    `read` is the read function (os.read); tests may give another with the same contract.
    """

    def __init__(self, path: Path, handle: Callable[[KmsgRecord], None], *, read: ReadFunction = os.read,
                 initial_backoff: float = 1.0, max_backoff: float = 60.0) -> None:
        self.path = path
        self._handle = handle
        self._read = read
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._wake_r = self._wake_w = -1
        self._fd: Optional[int] = None
        self._stream = False  # a file or pipe: several records per read
        self._pending = b""  # a stream's incomplete last line
        self._last_seq: Optional[int] = None
        self._skip_through: Optional[int] = None  # after a reopen: records up to here were read before
        self._overrun = False
        self._records_since_open = 0
        self._warned_malformed = False
        # what state() reports
        self._up = False
        self._records_read = 0
        self._records_lost = 0
        self._restarts = 0
        self._error: Optional[str] = None

    def state(self) -> ReaderState:
        with self._lock:
            return ReaderState(self._up, self._records_read, self._records_lost, self._restarts, self._error)

    def open(self) -> None:
        """Open the log at its end (after a failure: from the start, skipping what was read). Raises OSError."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            stream = not stat.S_ISCHR(os.fstat(fd).st_mode)
            try:
                os.lseek(fd, 0, os.SEEK_END if self._last_seq is None else os.SEEK_SET)
            except OSError as err:
                if err.errno != errno.ESPIPE:  # a pipe has no past to skip
                    raise
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._stream, self._pending = fd, stream, b""
        self._skip_through = self._last_seq
        self._records_since_open = 0
        with self._lock:
            self._up, self._error = True, None

    def start(self) -> None:
        """Start the reading thread; call after a successful open()."""
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="kmsg-reader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the device."""
        self._stopping.set()
        if self._thread is None:
            self._close()
            return
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self._thread.join(timeout)
        if not self._thread.is_alive():
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._thread = None

    # The thread.

    def _run(self) -> None:
        backoff = self.initial_backoff
        try:
            while not self._stopping.is_set():
                if self._fd is None:
                    with self._lock:
                        self._restarts += 1
                    try:
                        self.open()
                        log.info("reading %s again", self.path)
                    except OSError as err:
                        reason = describe_open_error(self.path, err)
                        if reason != self.state().error:
                            log.warning("%s; trying again in %gs", reason, backoff)
                        self._set_error(reason)
                        self._stopping.wait(backoff)
                        backoff = min(backoff * 2, self.max_backoff)
                        continue
                try:
                    self._pump()
                except Exception as err:  # the device failed, or a bug: restart, don't die
                    if isinstance(err, OSError):
                        reason = f"{self.path}: read failed: {errno.errorcode.get(err.errno or 0, 'error')}: {err}"
                    else:
                        log.exception("kernel log reader failed")
                        reason = f"{self.path}: reader failed: {err!r}"
                    if self._records_since_open:
                        backoff = self.initial_backoff
                    self._close()
                    self._set_error(reason)
                    log.warning("%s; opening it again in %gs", reason, backoff)
                    self._stopping.wait(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
        finally:
            self._close()

    def _set_error(self, reason: str) -> None:
        with self._lock:
            self._up, self._error = False, reason

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with self._lock:
            self._up = False

    def _pump(self) -> None:
        """Read until stopped; raises on a read error."""
        assert self._fd is not None
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self._stopping.is_set():
            poller.poll()
            while not self._stopping.is_set() and self._read_once():
                pass

    def _read_once(self) -> bool:
        """One read(); False when there is nothing more to read for now."""
        assert self._fd is not None
        try:
            data = self._read(self._fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except BrokenPipeError:  # EPIPE: the kernel overwrote records we had not read yet
            self._overrun = True
            return True
        if not data:  # the end of a file or pipe
            if self._pending:
                self._process(self._pending)
                self._pending = b""
            self._stopping.wait(EOF_POLL_SECONDS)
            return False
        if not self._stream:
            self._process(data)
            return True
        data = self._pending + data
        end = data.rfind(b"\n") + 1
        if end == 0 and len(data) < READ_SIZE:
            self._pending = data
            return True
        complete, self._pending = (data[:end], data[end:]) if end else (data, b"")
        for raw in split_records(complete):
            self._process(raw)
        return True

    def _process(self, raw: bytes) -> None:
        try:
            record = parse_record(raw)
        except ParseError as err:
            if not self._warned_malformed:
                log.warning("%s: skipping malformed record (reported once): %s", self.path, err)
                self._warned_malformed = True
            with self._lock:
                self._records_read += 1
            return
        if self._skip_through is not None:
            if record.seq <= self._skip_through:
                return  # read before the reader was restarted
            self._skip_through = None
        lost = 0
        if self._last_seq is not None and record.seq > self._last_seq + 1:
            lost = record.seq - self._last_seq - 1
        elif self._overrun and self._last_seq is None:
            lost = 1  # records were lost, but how many is not known
        self._overrun = False
        self._last_seq = record.seq
        self._records_since_open += 1
        with self._lock:
            self._records_read += 1
            self._records_lost += lost
        self._handle(record)
