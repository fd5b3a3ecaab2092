"""The result of one collection: its metric families and their renderings (each format, and its gzip, written at
most once and shared by every request that joins the collection)."""

from __future__ import annotations

import asyncio
import functools
import gzip
import logging
import time
from dataclasses import dataclass
from typing import Optional

from prometheus_client.core import Metric

from kmem_exporter.exposition import Format, render
from kmem_exporter.threads import DaemonPool

log = logging.getLogger(__name__)

GZIP_LEVEL = 6  # a 150 kB exposition shrinks tenfold for about a millisecond


@dataclass(frozen=True)
class CollectorOutcome:
    name: str
    metrics: tuple[Metric, ...]
    duration: float
    error: Optional[str]


class Collection:
    """The result of one collection: its metric families, and their renderings, made once and shared."""

    def __init__(self, families: list[Metric], failures: dict[str, str], pool: DaemonPool) -> None:
        self.families = families
        self.failures = failures  # collector -> reason, for those that failed
        self.collected_at = time.time()  # when it was made: shown to people
        self.collected_monotonic = time.monotonic()  # when it was made: for its age
        self._pool = pool
        self._bodies: dict[tuple[str, bool], asyncio.Future[bytes]] = {}
        self._rendered: dict[tuple[str, bool], bytes] = {}  # written in the collecting thread, before any request

    def prerender(self, form: Format, gzipped: bool) -> None:
        """Write `form` (and its gzip) now, in this thread: the thread that collected, whose caches are warm."""
        plain = self.render(form)
        self._rendered[(form.name, False)] = plain
        if gzipped:
            self._rendered[(form.name, True)] = gzip.compress(plain, GZIP_LEVEL, mtime=0)

    @property
    def succeeded(self) -> bool:
        return not self.failures

    def body(self, form: Format, gzipped: bool = False) -> "asyncio.Future[bytes]":
        """The exposition in `form` (gzip-compressed when asked): as the collecting thread wrote it (`prerender`),
        else rendered off the event loop at the first request; shared by every later one."""
        key = (form.name, gzipped)
        body = self._bodies.get(key)
        if body is None:
            if key in self._rendered:
                body = asyncio.get_running_loop().create_future()
                body.set_result(self._rendered[key])
            elif gzipped:
                plain = self.body(form)
                body = asyncio.ensure_future(self._compress(plain))
            else:
                body = self._pool.submit(functools.partial(self.render, form))
            self._bodies[key] = body
        return body

    def render(self, form: Format) -> bytes:
        return render(self.families, form, _unwritable)

    async def _compress(self, plain: "asyncio.Future[bytes]") -> bytes:
        data = await plain
        return await self._pool.submit(functools.partial(gzip.compress, data, GZIP_LEVEL, mtime=0))


class AnswerError(Exception):
    """The exposition cannot be written whole (out of memory, ...): no answer is better than one with families left
    out, which would say every collector succeeded."""


def _unwritable(family: Metric, err: Exception) -> None:
    what = "out of memory (MemoryError)" if isinstance(err, MemoryError) else repr(err)
    raise AnswerError(f"metric family {family.name} cannot be written: {what}") from err
