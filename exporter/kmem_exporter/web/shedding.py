"""The request slots of `--web.max-requests`, and what a plain request for the metrics gets before HTTP parsing.

A client refused with 503 may ask again at once, and a few such clients can ask thousands of times a second. Each
of those requests would go through the HTTP framework (parse, route, respond) on the event loop that serves the
admitted ones, and slow them down. So `Shedder` looks at a plain `GET` of the metrics path on an idle connection
straight from its bytes: while every slot is taken it is answered at once (a fixed answer, the same as the server's
own 503) and never reaches the framework; otherwise it is given a slot there and then, so that a burst of requests
received in one go is refused beyond the limit before parsing too, instead of each reaching the framework first.
Anything else (another path or method, a body, a request behind another on the same connection) is left to the
server, which takes a slot or answers 503 as usual.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Union

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
    """What a request head received whole on an idle connection gets before the server parses it."""

    def __init__(self, slots: RequestSlots, metrics_path: str) -> None:
        self._slots = slots
        path = re.escape(metrics_path.encode())
        self._request_line = re.compile(rb"GET " + path + rb"(?:\?[^ \r\n]*)? HTTP/1\.([01])\r\n")

    def answer(self, head: bytes) -> Union[tuple[bytes, bool], bool]:
        """For `head`, one whole request head and nothing more: (the answer, whether to close the connection after
        it) when it is refused now; True when it is a plain request for the metrics that now holds a slot, which
        the server's handler takes over (`give_back` if it never reaches it); False to hand it to the server as is."""
        if head.find(_HEAD_END) != len(head) - len(_HEAD_END):
            return False
        line = self._request_line.match(head)
        if line is None:
            return False
        headers = b"\r\n" + head[line.end():].lower()
        if _BODY_HEADERS.search(headers):
            return False
        if self._slots.try_take():
            return True
        connection = {token.strip() for match in _CONNECTION.findall(headers) for token in match.split(b",")}
        close = b"close" in connection or line.group(1) == b"0"  # HTTP/1.0: closed after the answer
        return (_CLOSE, True) if close else (_KEEP_ALIVE, False)

    def give_back(self) -> None:
        """The slot of a request that `answer` admitted and the server's handler did not take over."""
        self._slots.release()
