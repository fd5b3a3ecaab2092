"""Memory the process takes for clients, kept small and given back to the system after a flood.

- A TLS connection's read buffer: asyncio gives every TLS connection (in its handshake too) a 256 KiB buffer, for
  its whole life. 32 KiB holds two whole TLS records and serves request heads just as well, at an eighth of the cost.
- glibc's allocator: at most two arenas (threads share them rather than each keeping its own free memory), and a
  fixed threshold above which a block is mapped on its own (glibc raises it after large blocks are freed, so that
  later ones come from the heap, where their memory stays after the clients are gone).
- After many connections have closed, `malloc_trim` gives the free parts of the heap back to the system.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
from asyncio import sslproto
from typing import Callable, Optional

log = logging.getLogger(__name__)

TLS_READ_BUFFER = 32 * 1024
ARENAS = 2
MMAP_THRESHOLD = 128 * 1024
TRIM_EVERY = 5.0  # seconds between looks at how many connections closed
TRIM_AFTER = 64  # connections closed since the last trim that make another worth it

_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8


@functools.lru_cache(maxsize=1)
def _libc() -> Optional[ctypes.CDLL]:
    """glibc, looked up once: find_library runs ldconfig, far too slow to repeat on the event loop at every trim."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def tune_heap() -> None:
    """Small TLS read buffers; with glibc, two arenas and a fixed mmap threshold."""
    sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
    libc = _libc()
    if libc is None:
        log.debug("not glibc: the allocator is left as it is")
        return
    libc.mallopt(_M_ARENA_MAX, ARENAS)
    libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def trim() -> bool:
    """Give the heap's free memory back to the system (glibc's malloc_trim); whether anything was given back."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


class HeapKeeper:
    """Trims the heap after many connections have closed (`closed` counts them), looking every few seconds."""

    def __init__(self, closed: Callable[[], int], every: float = TRIM_EVERY, after: int = TRIM_AFTER) -> None:
        self._closed, self._every, self._after = closed, every, after
        self._seen = closed()
        self.trims = 0
        self._timer = asyncio.get_running_loop().call_later(every, self._look)

    def _look(self) -> None:
        closed = self._closed()
        if closed - self._seen >= self._after:
            self._seen = closed
            self.trims += 1
            trim()  # a few milliseconds for a heap of a few hundred MB
        self._timer = asyncio.get_running_loop().call_later(self._every, self._look)

    def stop(self) -> None:
        self._timer.cancel()
