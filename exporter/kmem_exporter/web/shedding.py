"""The request slots of `--web.max-requests`, the requests waiting for one, and what a plain request for the
metrics gets before HTTP parsing when it could neither take a slot nor wait.

At most `limit` requests are served at once, and as many more wait for a slot, first come first served, for as long
as their scraper waits for its answer (`X-Prometheus-Scrape-Timeout-Seconds`; 10 s, Prometheus's default, without
it; at most 2 minutes). So a burst of scrapers up to twice the limit is answered 200, a little later, rather than
failed; only beyond that, or after the wait, is a request answered 503 (`Retry-After: 1`).

A client refused with 503 may ask again at once, and a few such clients can ask thousands of times a second. Each
of those requests would go through the HTTP framework (parse, route, respond) on the event loop that serves the
admitted ones, and slow them down. So while every slot is taken and the queue is full, `Shedder` answers a plain,
well-formed `GET` of the metrics path on an idle connection straight from its bytes (the same 503 the server gives),
and it never reaches the framework. It holds no state: a slot is only ever taken by the server's handler, so a
request that the framework answers itself before the handler (400, 413, 417, ...) cannot keep one. Anything unusual
(another path or method, a body, `Expect`, `Upgrade`, a header the framework would refuse, a request behind another
on the same connection) is left to the server, which takes a slot, waits, or answers as usual.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from typing import Mapping, Optional

from kmem_exporter.web.notices import Notice

log = logging.getLogger(__name__)

REFUSED_TEXT = "too many requests in flight\n"
WAIT = 10.0  # seconds a request waits for a slot when its scraper does not say how long it waits (Prometheus's default)
MAX_WAIT = 120.0
_REFUSED = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\n"
            f"Content-Length: {len(REFUSED_TEXT)}\r\n").encode()
_KEEP_ALIVE = _REFUSED + b"\r\n" + REFUSED_TEXT.encode()
_CLOSE = _REFUSED + b"Connection: close\r\n\r\n" + REFUSED_TEXT.encode()
_HEADER = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[ \t]*[\x21-\x7e]?(?:[\x20-\x7e\t]*[\x21-\x7e])?[ \t]*")
_PASSED_ON = frozenset((b"content-length", b"transfer-encoding", b"expect", b"upgrade"))


class RequestSlots:
    """At most `limit` /metrics requests at once, from their start until their answer is handed to the connection,
    and at most `limit` more waiting for a slot, the longest waiting first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self.notice = Notice(log, f"{limit} /metrics requests in flight and {limit} waiting (--web.max-requests); "
                                  "answering 503")

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def full(self) -> bool:
        """No slot free and no room to wait for one: a request now is refused."""
        return self.in_use >= self.limit and len(self._waiting) >= self.limit

    async def take(self, wait: float) -> bool:
        """A slot, at once or within `wait` seconds; False (refused) when there is no room to wait or the wait ends
        without one."""
        if self.in_use < self.limit and not self._waiting:
            self.in_use += 1
            return True
        if self.full:
            self.notice.add("requests refused")
            return False
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await asyncio.wait_for(asyncio.shield(turn), wait)
        except asyncio.TimeoutError:
            if turn.done():  # given the slot as the wait ended
                return True
            self._waiting.remove(turn)
            self.notice.add("requests refused after waiting")
            return False
        except asyncio.CancelledError:
            if turn.done():
                self.release()
            else:
                self._waiting.remove(turn)
            raise
        return True

    def release(self) -> None:
        """Give the slot back: to the request waiting longest, if any."""
        if self._waiting:
            self._waiting.popleft().set_result(None)
        else:
            self.in_use -= 1


def slot_wait(headers: Mapping[str, str]) -> float:
    """How long a request may wait for a slot: as long as its scraper waits for the answer, at most MAX_WAIT."""
    try:
        seconds = float(headers.get("X-Prometheus-Scrape-Timeout-Seconds", WAIT))
    except ValueError:
        return WAIT
    return min(max(seconds, 0.0), MAX_WAIT) if seconds == seconds else WAIT  # NaN: the default


class Shedder:
    """What a request head received whole on an idle connection gets before the server parses it."""

    def __init__(self, slots: RequestSlots, metrics_path: str) -> None:
        self._slots = slots
        path = re.escape(metrics_path.encode())
        self._request_line = re.compile(rb"GET " + path + rb"(?:\?[\x21-\x7e]*)? HTTP/1\.([01])")

    def __call__(self, head: bytes) -> Optional[tuple[bytes, bool]]:
        """For `head`, one whole request head and nothing more: (the answer, whether to close the connection after
        it) while the slots and the queue are full and `head` is a plain request for the metrics; None to hand it to
        the server."""
        if not self._slots.full or not head.endswith(b"\r\n\r\n"):
            return None
        lines = head[:-4].split(b"\r\n")
        line = self._request_line.fullmatch(lines[0])
        if line is None:
            return None
        close = line.group(1) == b"0"  # HTTP/1.0: closed after the answer
        for header in lines[1:]:
            if _HEADER.fullmatch(header) is None:
                return None  # the server answers what it refuses (400) itself
            name, _, value = header.partition(b":")
            name = name.lower()
            if name in _PASSED_ON:
                return None
            if name == b"connection":
                tokens = {token.strip().lower() for token in value.split(b",")}
                if b"upgrade" in tokens:
                    return None
                close = close or b"close" in tokens
        self._slots.notice.add("requests refused before parsing")
        return (_CLOSE, True) if close else (_KEEP_ALIVE, False)
