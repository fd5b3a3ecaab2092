"""The server's limits on client connections, kept in one place: how many may be open, how many may be in a TLS
handshake, how long a request head may take to arrive, and which connection goes first when a limit is reached
(see connections.py for how each connection keeps to them, and answers.py for the answers waiting to be read).

Who goes first: the connection that costs the most and has earned the least. A connection in a TLS handshake or
holding an answer it does not read costs the most; then one with a request waiting for its password check, or a
request head begun; then one that sends nothing or waits between requests (its client can simply connect again).
A connection that authenticated, whose request is being answered past the access checks, or that is reading its
answer has earned its place: it is never closed to make room for a new connection, which has done neither; a new
connection that finds only earned ones is refused. A connection closed to make room stops counting at once; until
the event loop has closed its socket it is `closing`, and the listener accepts that many fewer sockets (see
listener.py), so that the open sockets never exceed the limit plus the listen backlog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Generic, Optional, Protocol, TypeVar

from kmem_exporter.web.answers import AnswerBudget
from kmem_exporter.web.notices import Notice

log = logging.getLogger(__name__)

MAX_HANDSHAKES = 64  # TLS handshakes in progress at once; beyond it the oldest one is closed
EARNED = 3  # a standing at or above this is never given up for a new connection


class Tracked(Protocol):
    """A connection as the limit sees it."""

    def standing(self, now: float) -> int:
        """0: costly and earned nothing (TLS handshake, an answer it does not read); 1: a request waiting for its
        access checks or a head begun; 2: silent or between requests; EARNED and above: never given up."""

    @property
    def handshaking(self) -> bool:
        """In its TLS handshake."""

    def evict(self) -> bool:
        """Disconnect it at once (it has already left the limit); True when its socket stays open until the event
        loop closes it (then it leaves again, with its transport)."""


C = TypeVar("C", bound=Tracked)
Shed = Callable[[bytes], Optional[tuple[bytes, bool]]]
"""Looks at a whole request head received on an idle connection before the server does (see shedding.py): (the
answer, whether to close after it) to refuse it at once, None to hand it to the server."""

_WHY = {0: "costly (a TLS handshake, or an answer not read)", 1: "a request head begun or waiting for its access check",
        2: "idle"}


class ConnectionLimit(Generic[C]):
    """The open connections, shared by every listener, least recently active first."""

    def __init__(self, limit: int, header_timeout: float, shed: Optional[Shed] = None,
                 answers: Optional[AnswerBudget] = None, max_handshakes: int = MAX_HANDSHAKES) -> None:
        self.limit = limit
        self.shed = shed
        self.header_timeout = header_timeout
        self.answers = answers if answers is not None else AnswerBudget()
        self.max_handshakes = max_handshakes
        self.accepted = 0
        self.rejected = 0
        self.evicted = 0
        self.closed = 0  # connections that left, all together (a sign for returning memory to the system)
        self._connections: dict[C, None] = {}  # insertion order: least recently active first
        self._by_transport: dict[asyncio.BaseTransport, C] = {}
        self._handshakes: dict[C, None] = {}  # oldest first
        self._closing: dict[C, None] = {}  # closed to make room, their sockets not yet closed by the event loop
        self._notice = Notice(log, "connection limit reached ({open} open, --web.max-connections={limit})")
        self._handshake_notice = Notice(log, "TLS handshakes in progress reached {limit}; closing the oldest")

    @property
    def open(self) -> int:
        return len(self._connections)

    @property
    def closing(self) -> int:
        """Connections closed to make room whose sockets the event loop has not closed yet."""
        return len(self._closing)

    @property
    def handshakes(self) -> int:
        return len(self._handshakes)

    def admit(self, connection: C) -> bool:
        """Count a new connection in, making room by closing the one that costs the most and earned the least; False
        (the new one is refused) when every open connection has earned its place."""
        self.accepted += 1
        if len(self._connections) >= self.limit:
            victim = self._victim()
            if victim is None:
                self.rejected += 1
                self._notice.add("new connections refused: every open one is authenticated, answered or reading",
                                 open=self.open, limit=self.limit)
                return False
            self.evict(victim, self._notice, open=self.open, limit=self.limit)
        self._connections[connection] = None
        return True

    def attach(self, connection: C, transport: asyncio.BaseTransport) -> None:
        """The connection's transport, once it has one (see `connection_of`)."""
        self._by_transport[transport] = connection

    def _victim(self) -> Optional[C]:
        now = time.monotonic()
        best: Optional[C] = None
        best_standing = EARNED
        for connection in self._connections:  # least recently active first: the first of the lowest standing wins
            standing = connection.standing(now)
            if standing < best_standing:
                best, best_standing = connection, standing
                if standing == 0:
                    break
        return best

    def evict(self, connection: C, notice: Notice, **fields: object) -> None:
        """Disconnect `connection` at once, and stop counting it now, not when its close completes: several
        connections accepted in one pass of the event loop must each find a different one to replace."""
        self.evicted += 1
        notice.add(f"closed to make room: {_WHY.get(connection.standing(time.monotonic()), 'other')}", **fields)
        self.leave(connection, None)
        if connection.evict():
            self._closing[connection] = None

    def handshake_started(self, connection: C) -> None:
        if len(self._handshakes) >= self.max_handshakes:
            oldest = next(iter(self._handshakes))
            self.evict(oldest, self._handshake_notice, limit=self.max_handshakes)
        self._handshakes[connection] = None

    def handshake_ended(self, connection: C) -> None:
        self._handshakes.pop(connection, None)

    def leave(self, connection: C, transport: Optional[asyncio.BaseTransport]) -> None:
        """Stop counting `connection` (its transport too, when given: an evicted one keeps it until it is closed)."""
        if self._connections.pop(connection, False) is None:
            self.closed += 1
        self._closing.pop(connection, None)
        self._handshakes.pop(connection, None)
        if transport is not None and self._by_transport.get(transport) is connection:
            del self._by_transport[transport]

    def secured(self, connection: C, plain: asyncio.BaseTransport, tls: asyncio.BaseTransport) -> None:
        """The connection's TLS transport (after the handshake) replaces its TCP one."""
        self._by_transport.pop(plain, None)
        self._by_transport[tls] = connection

    def touch(self, connection: C) -> None:
        """Mark the connection as the most recently active."""
        if self._connections.pop(connection, False) is None:
            self._connections[connection] = None

    def connection_of(self, transport: Optional[asyncio.BaseTransport]) -> Optional[C]:
        return None if transport is None else self._by_transport.get(transport)
