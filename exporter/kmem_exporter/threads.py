"""Blocking work off the event loop, in daemon threads.

A read can hang in the kernel (a stuck NFS mount, a debugfs file behind a lock). A thread pool's workers are joined
when the interpreter exits, so one such read would keep the exporter from shutting down; daemon threads do not.
`DaemonPool` keeps idle daemon workers for reuse, so a scrape does not start a thread per collector; a worker stuck
in a read is simply not idle, and the pool starts another when one is needed.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import deque
from typing import Callable, TypeVar

T = TypeVar("T")

_IDLE_SECONDS = 60.0  # an idle worker ends after this long; the pool starts a new one when work comes


def _settle(loop: asyncio.AbstractEventLoop, future: "asyncio.Future[T]", function: Callable[[], T]) -> None:
    """Run `function` here and hand its result or error to `future`, on its loop."""

    def deliver(outcome: Callable[[], None]) -> None:
        if not future.done():  # the awaiting coroutine may have given up (cancelled)
            outcome()

    outcome: Callable[[], None]
    try:
        outcome = functools.partial(future.set_result, function())
    except BaseException as err:  # delivered to the awaiting coroutine, which decides
        outcome = functools.partial(future.set_exception, err)
    try:
        loop.call_soon_threadsafe(deliver, outcome)
    except RuntimeError:  # the loop has closed: the exporter is shutting down
        pass


def run_in_daemon_thread(function: Callable[[], T], name: str) -> "asyncio.Future[T]":
    """Run `function` in a new daemon thread; the returned future (of the running loop) gets its result or error.
    For long-lived work (a background loop's pass); short, frequent work goes to a DaemonPool."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    threading.Thread(target=_settle, args=(loop, future, function), name=name, daemon=True).start()
    return future


class DaemonPool:
    """Daemon worker threads, reused while idle. Unbounded in principle, bounded in practice by its callers: the
    scraper never submits a collector whose previous collection is still running."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._work: deque[Callable[[], None]] = deque()
        self._idle = 0
        self._started = 0
        self._wake = threading.Condition(self._lock)

    def submit(self, function: Callable[[], T]) -> "asyncio.Future[T]":
        """Run `function` in a worker; the returned future (of the running loop) gets its result or error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._work.append(functools.partial(_settle, loop, future, function))
            if self._idle > len(self._work) - 1:
                self._wake.notify()
            else:
                self._started += 1
                threading.Thread(target=self._worker, name=f"{self._name}-{self._started}", daemon=True).start()
        return future

    def _worker(self) -> None:
        while True:
            with self._lock:
                if not self._work:
                    self._idle += 1
                    self._wake.wait_for(lambda: bool(self._work), timeout=_IDLE_SECONDS)
                    self._idle -= 1
                    if not self._work:
                        return
                job = self._work.popleft()
            job()
