"""Blocking work off the event loop, in daemon threads.

A read can hang in the kernel (a stuck NFS mount, a debugfs file behind a lock). A thread pool's workers are joined
when the interpreter exits, so one such read would keep the exporter from shutting down; a daemon thread does not.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Callable, TypeVar

T = TypeVar("T")


def run_in_daemon_thread(function: Callable[[], T], name: str) -> "asyncio.Future[T]":
    """Run `function` in a new daemon thread; the returned future (of the running loop) gets its result or error."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():  # the awaiting coroutine may have given up (cancelled)
            outcome()

    def work() -> None:
        outcome: Callable[[], None]
        try:
            outcome = functools.partial(future.set_result, function())
        except BaseException as err:  # delivered to the awaiting coroutine, which decides
            outcome = functools.partial(future.set_exception, err)
        try:
            loop.call_soon_threadsafe(settle, outcome)
        except RuntimeError:  # the loop has closed: the exporter is shutting down
            pass

    threading.Thread(target=work, name=name, daemon=True).start()
    return future
