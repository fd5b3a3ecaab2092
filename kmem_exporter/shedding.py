"""The request slots of `--web.max-requests`, and the 503 for a request beyond them, answered before HTTP parsing.

A client refused with 503 may ask again at once, and a few such clients can ask thousands of times a second. Each
of those requests would go through the HTTP framework (parse, route, respond) on the event loop that serves the
admitted ones, and slow them down. So while every slot is taken, `Shedder` answers a plain `GET` of the metrics
path on an idle connection straight from its bytes (a fixed answer, the same as the server's own 503), and the
request never reaches the framework. Anything else (another path or method, a body, a request behind another on
the same connection) is left to the server, which answers it as usual.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Optional

log = logging.getLogger(__name__)

REFUSED_TEXT = "too many requests in flight\n"
_REFUSED = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\n"
            f"Content-Length: {len(REFUSED_TEXT)}\r\n").encode()
_KEEP_ALIVE = _REFUSED + b"\r\n" + REFUSED_TEXT.encode()
_CLOSE = _REFUSED + b"Connection: close\r\n\r\n" + REFUSED_TEXT.encode()
_HEAD_END = b"\r\n\r\n"
_BODY_HEADERS = re.compile(rb"\r\n(?:content-length|transfer-encoding)[ \t]*:")
_CONNECTION = re.compile(rb"\r\nconnection[ \t]*:[ \t]*([^\r\n]*)")


class RequestSlots:
    """At most `limit` /metrics requests at once, from their start until their answer is handed to the connection."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._last_warning = -float("inf")

    @property
    def full(self) -> bool:
        return self.in_use >= self.limit

    def try_take(self) -> bool:
        if self.full:
            self.note_refused()
            return False
        self.in_use += 1
        return True

    def release(self) -> None:
        self.in_use -= 1

    def note_refused(self) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 60:  # one line a minute while it goes on, not one per request
            self._last_warning = now
            log.warning("%d /metrics requests in flight (--web.max-requests); answering 503", self.in_use)


class Shedder:
    """The 503 for a request head received whole on an idle connection while every slot is taken."""

    def __init__(self, slots: RequestSlots, metrics_path: str) -> None:
        self._slots = slots
        path = re.escape(metrics_path.encode())
        self._request_line = re.compile(rb"GET " + path + rb"(?:\?[^ \r\n]*)? HTTP/1\.([01])\r\n")

    def answer(self, head: bytes) -> Optional[tuple[bytes, bool]]:
        """(the answer, whether to close the connection after it) when `head`, one whole request head and nothing
        more, is to be refused now; None to hand it to the server."""
        if not self._slots.full or head.find(_HEAD_END) != len(head) - len(_HEAD_END):
            return None
        line = self._request_line.match(head)
        if line is None:
            return None
        headers = b"\r\n" + head[line.end():].lower()
        if _BODY_HEADERS.search(headers):
            return None
        connection = {token.strip() for match in _CONNECTION.findall(headers) for token in match.split(b",")}
        close = b"close" in connection or line.group(1) == b"0"  # HTTP/1.0: closed after the answer
        self._slots.note_refused()
        return (_CLOSE, True) if close else (_KEEP_ALIVE, False)
