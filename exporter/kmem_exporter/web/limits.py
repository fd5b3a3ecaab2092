"""The server's limits on client connections, kept in one place: how many may be open, how long a request head
may take to arrive, and how many unsent bytes clients that do not read may hold (see connections.py for how each
connection keeps to them)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Generic, Optional, Protocol, TypeVar, Union

log = logging.getLogger(__name__)

WRITE_TIMEOUT = 30.0  # seconds a paused connection may wait for its client to read before it is disconnected
UNSENT_MAX_BYTES = 32 << 20  # unsent bytes of paused connections, all together; beyond it they are disconnected


class Tracked(Protocol):
    """A connection as the limit sees it."""

    @property
    def idle(self) -> bool:
        """Between requests, or nothing sent yet: closing it costs its client only a reconnect."""

    def close(self) -> None:
        """Disconnect it."""


class Shed(Protocol):
    """Looks at a request head received whole on an idle connection before the server does (see shedding.py)."""

    def answer(self, head: bytes) -> Union[tuple[bytes, bool], bool]:
        """(the answer, close after it) to refuse it; True when it now holds a request slot; False to pass it on."""

    def give_back(self) -> None:
        """The slot of a request that `answer` admitted and the server's handler did not take over."""


C = TypeVar("C", bound=Tracked)


class ConnectionLimit(Generic[C]):
    """The open connections, shared by every listener, least recently active first."""

    def __init__(self, limit: int, header_timeout: float, shed: Optional[Shed] = None,
                 write_timeout: float = WRITE_TIMEOUT, unsent_max_bytes: int = UNSENT_MAX_BYTES) -> None:
        self.limit = limit
        self.header_timeout = header_timeout
        self.shed = shed  # sees plain requests before the server: refuses them at once, or gives them a slot
        self.write_timeout = write_timeout
        self.unsent_max_bytes = unsent_max_bytes
        self.unsent_bytes = 0  # in the buffers of paused connections, all together
        self.rejected = 0
        self.evicted = 0
        self._connections: dict[C, None] = {}  # insertion order: least recently active first
        self._by_transport: dict[asyncio.BaseTransport, C] = {}
        self._last_warning = -float("inf")

    @property
    def open(self) -> int:
        return len(self._connections)

    def admit(self, connection: C, transport: asyncio.BaseTransport) -> bool:
        """Count a new connection in, making room by closing the longest idle one if need be."""
        if len(self._connections) >= self.limit:
            idle = next((c for c in self._connections if c.idle), None)
            if idle is None:
                self.note_rejected()
                return False
            self.evicted += 1
            idle.close()
        self._connections[connection] = None
        self._by_transport[transport] = connection
        return True

    def leave(self, connection: C, transport: Optional[asyncio.BaseTransport]) -> None:
        self._connections.pop(connection, None)
        if transport is not None:
            self._by_transport.pop(transport, None)

    def secured(self, connection: C, plain: asyncio.BaseTransport,
                tls: asyncio.BaseTransport) -> None:
        """The connection's TLS transport (after the handshake) replaces its TCP one."""
        self._by_transport.pop(plain, None)
        self._by_transport[tls] = connection

    def touch(self, connection: C) -> None:
        """Mark the connection as the most recently active."""
        if self._connections.pop(connection, False) is None:
            self._connections[connection] = None

    def connection_of(self, transport: Optional[asyncio.BaseTransport]) -> Optional[C]:
        return None if transport is None else self._by_transport.get(transport)

    def take_unsent(self, size: int) -> bool:
        """Room in the budget for `size` bytes that a paused connection holds."""
        if self.unsent_bytes + size > self.unsent_max_bytes:
            return False
        self.unsent_bytes += size
        return True

    def release_unsent(self, size: int) -> None:
        self.unsent_bytes -= size

    def note_rejected(self) -> None:
        self.rejected += 1
        now = time.monotonic()
        if now - self._last_warning >= 60:  # one line a minute while it goes on, not one per connection
            self._last_warning = now
            log.warning("connection limit reached (%d open, --web.max-connections) and none idle; closing new "
                        "connections (%d so far)", self.open, self.rejected)
