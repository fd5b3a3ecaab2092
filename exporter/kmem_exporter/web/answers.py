"""The budget of answers waiting for their clients to read them.

An answer is handed to its connection whole; what the kernel does not take at once waits in the connection's
buffer. Before an answer is handed over, its size is reserved in a budget shared by every connection, so that the
bytes waiting in buffers never pass it, whatever the clients do. When the budget is full, the request waits its turn
(first come, first served) while the connections that hold budget and have not read anything for a while (stalled)
are disconnected to make room; a connection whose client reads keeps its place. A request that cannot get room
within the wait is answered 503. A connection that reads nothing for the write timeout is disconnected anyway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional, Protocol

from kmem_exporter.web.notices import Notice

log = logging.getLogger(__name__)

MAX_BYTES = 32 << 20  # answers waiting to be read, all connections together
STALL = 0.5  # seconds without reading after which a connection holding budget may be disconnected for a waiting one
WAIT = 10.0  # seconds a request waits for room for its answer before it is answered 503
WRITE_TIMEOUT = 30.0  # seconds without reading after which a connection holding budget is disconnected anyway


class Holder(Protocol):
    def unsent(self) -> int:
        """Bytes of its answers not yet taken by the kernel."""

    def undelivered(self) -> int:
        """Bytes of its answers its client has not received yet (ours and the kernel's): it reads when this drops."""

    def evict(self) -> bool:
        """Disconnect it at once (True: its socket is closed a little later)."""


@dataclass
class _Held:
    size: int
    progress_at: float  # when it last read (its undelivered bytes went down), or took the budget
    undelivered: int = 0


@dataclass(eq=False)
class _Waiter:
    holder: Holder
    size: int
    granted: "asyncio.Future[bool]" = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class AnswerBudget:
    def __init__(self, max_bytes: int = MAX_BYTES, stall: float = STALL, wait: float = WAIT,
                 write_timeout: float = WRITE_TIMEOUT) -> None:
        self.max_bytes, self.stall, self.wait, self.write_timeout = max_bytes, stall, wait, write_timeout
        self.held = 0
        self._holders: dict[Holder, _Held] = {}
        self._waiting: deque[_Waiter] = deque()
        self._sweep: Optional[asyncio.TimerHandle] = None
        self.notice = Notice(log, f"answers waiting for clients to read them reached {max_bytes} bytes "
                                  "(disconnecting those that do not read)")

    def holds(self, holder: Holder) -> bool:
        return holder in self._holders

    def stalled(self, holder: Holder, now: float) -> bool:
        """Holds budget and has not read for the stall time."""
        held = self._holders.get(holder)
        return held is not None and now - held.progress_at >= self.stall

    async def room(self, holder: Holder, size: int) -> bool:
        """Reserve `size` bytes for an answer about to be handed to `holder`'s connection, waiting (first come, first
        served) up to the wait time; False when there is no room by then."""
        if not self._waiting and self._fits(size):
            self._reserve(holder, size)
            return True
        waiter = _Waiter(holder, size)
        self._waiting.append(waiter)
        self._sweep_soon(0.0)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.granted), self.wait)
        except asyncio.TimeoutError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                return waiter.granted.result()  # granted as the wait ended
            self.notice.add("answers refused with 503 after waiting for room")
            return False
        finally:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            if not waiter.granted.done():
                waiter.granted.cancel()

    def settle(self, holder: Holder) -> None:
        """The connection's unsent bytes now (after an answer was handed over, or a pause or resume of writing)."""
        if holder not in self._holders:
            return
        if holder.unsent() == 0:  # the usual case: the kernel took the whole answer, nothing is held
            self.release(holder)
            return
        self._look(holder, time.monotonic())
        self._grant()
        if self._holders:
            self._sweep_soon(self.stall / 2)

    def _look(self, holder: Holder, now: float) -> None:
        held = self._holders[holder]
        undelivered = holder.undelivered()
        progress_at = now if undelivered < held.undelivered or held.undelivered == 0 else held.progress_at
        self._set(holder, holder.unsent(), progress_at, undelivered)

    def release(self, holder: Holder) -> None:
        held = self._holders.pop(holder, None)
        if held is not None:
            self.held -= held.size
            self._grant()

    def _fits(self, size: int) -> bool:
        return self.held + size <= self.max_bytes or self.held == 0  # an answer alone always fits

    def _reserve(self, holder: Holder, size: int) -> None:
        """`size` more bytes for `holder`, which counts as having just made progress."""
        held = self._holders.get(holder)
        self._set(holder, (held.size if held is not None else 0) + size, time.monotonic())

    def _set(self, holder: Holder, size: int, progress_at: float, undelivered: int = 0) -> None:
        held = self._holders.pop(holder, None)
        if held is not None:
            self.held -= held.size
        if size > 0:
            self._holders[holder] = _Held(size, progress_at, undelivered)
            self.held += size

    def _grant(self) -> None:
        while self._waiting and self._fits(self._waiting[0].size):
            waiter = self._waiting.popleft()
            if waiter.granted.done():
                continue
            self._reserve(waiter.holder, waiter.size)
            waiter.granted.set_result(True)

    def _sweep_soon(self, delay: float) -> None:
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(delay, self._sweep_now)

    def _sweep_now(self) -> None:
        """Note who read since the last look; disconnect stalled holders while requests wait, and holders that
        read nothing for the write timeout."""
        self._sweep = None
        now = time.monotonic()
        for holder in list(self._holders):
            self._look(holder, now)
        for holder, held in sorted(self._holders.items(), key=lambda item: item[1].progress_at):
            idle_for = now - held.progress_at
            pressed = bool(self._waiting) and not self._fits(self._waiting[0].size)
            if idle_for >= self.write_timeout or (pressed and idle_for >= self.stall):
                self.notice.add("connections disconnected: their clients did not read")
                self.release(holder)
                holder.evict()
        self._grant()
        if self._holders or self._waiting:
            self._sweep_soon(self.stall / 2)
