"""One log line per limit and interval: the first time a limit is reached it is logged at once; while it goes on,
at most one more line per interval says what happened since, counted."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

INTERVAL = 60.0


class Notice:
    """What a limit did (closed, refused, ...), counted, and logged at most once per `interval`."""

    def __init__(self, logger: logging.Logger, headline: str, interval: float = INTERVAL) -> None:
        self._log = logger
        self._headline = headline  # str.format fields from `add`
        self._interval = interval
        self._last = -float("inf")
        self._counts: dict[str, int] = {}
        self._fields: dict[str, object] = {}
        self._flush: Optional[asyncio.TimerHandle] = None
        self.total = 0

    def add(self, what: str, **fields: object) -> None:
        self.total += 1
        self._counts[what] = self._counts.get(what, 0) + 1
        self._fields = fields
        now = time.monotonic()
        if now - self._last >= self._interval:
            self.flush()
        elif self._flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # logged with the next one
            self._flush = loop.call_later(self._last + self._interval - now, self.flush)

    def flush(self) -> None:
        """Log what was counted since the last line, if anything."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if not self._counts:
            return
        first = self._last == -float("inf")
        self._last = time.monotonic()
        counts = "; ".join(f"{what}: {n}" for what, n in self._counts.items())
        since = "" if first else f" in the last {self._interval:g}s"
        try:
            headline = self._headline.format(**self._fields)
        except (KeyError, IndexError):
            headline = self._headline
        self._log.warning("%s;%s %s", headline, since, counts)
        self._counts.clear()
