"""The TCP listener: each connection is counted against the connection limit the moment it is accepted.

asyncio's own server accepts up to a backlog of sockets each time the listening socket is readable, and connects each
to its protocol one or two passes of the event loop later, so that in a burst several batches of sockets (hundreds)
are open before the limit counts any of them. Here a socket is counted (or refused) as it is accepted: a refused one
is answered and closed before the next accept. A connection it replaces stops counting at once and is closed: at
once if its socket was accepted in the same pass, else by the event loop in a later pass (aborted, or aborted as its
protocol gets it when it was still being connected). Until then it is `closing`, and each pass accepts at most the
listen backlog less the closing ones, so the exporter's client sockets never exceed the limit plus the backlog.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Callable, Optional

from kmem_exporter.web.connections import GuardedConnection
from kmem_exporter.web.limits import ConnectionLimit

ACCEPT_RETRY = 1.0  # seconds before accepting again when out of file descriptors or memory (as asyncio does)


async def bind(host: Optional[str], port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets for every address `host` names (all interfaces when empty), as `loop.create_server` makes
    them: SO_REUSEADDR, IPv6 sockets IPv6 only. OSError when one cannot be bound."""
    infos = await asyncio.get_running_loop().getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as err:  # said as asyncio says it
                raise OSError(err.errno, f"error while attempting to bind on address {address!r}: "
                                         f"{(err.strerror or str(err)).lower()}") from None
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener(asyncio.AbstractServer):
    """Accepts on `sockets`, each new connection made by `make` and counted against `limit` at once; each pass of
    the event loop at most `backlog` sockets less those of `limit` still closing."""

    def __init__(self, sockets: list[socket.socket], make: Callable[[], GuardedConnection], backlog: int,
                 limit: ConnectionLimit[GuardedConnection]) -> None:
        self._loop = asyncio.get_running_loop()
        self._listening: Optional[list[socket.socket]] = sockets
        self._make = make
        self._backlog = backlog
        self._limit = limit
        for sock in sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._listening or ())

    def _accept(self, listening: socket.socket) -> None:
        for _ in range(max(0, self._backlog - self._limit.closing)):
            try:
                sock, _ = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as err:
                if err.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise  # the event loop logs it
                self._loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                                   "exception": err})
                self._loop.remove_reader(listening.fileno())
                self._loop.call_later(ACCEPT_RETRY, self._resume, listening)
                return
            sock.setblocking(False)
            connection = self._make()
            if connection.admit(sock):
                self._loop.create_task(self._connect(connection))
            else:
                connection.refuse(sock)

    def _resume(self, listening: socket.socket) -> None:
        if self._listening is not None:
            self._loop.add_reader(listening.fileno(), self._accept, listening)

    async def _connect(self, connection: GuardedConnection) -> None:
        sock = connection.take_socket()
        if sock is None:  # closed to make room for a connection accepted after it in the same pass
            return
        try:
            await self._loop.connect_accepted_socket(lambda: connection, sock)
        except Exception as err:  # noqa: BLE001 - the client left before its transport was made, or worse: it
            connection.connection_lost(err)  # stops counting either way
            sock.close()

    def close(self) -> None:
        for sock in self._listening or ():
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._listening = None

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._listening is not None

    async def start_serving(self) -> None:
        pass  # serving from the start

    async def serve_forever(self) -> None:
        raise NotImplementedError

    async def wait_closed(self) -> None:
        pass
