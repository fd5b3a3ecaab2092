"""ConnectionLimit's bounds on answers that wait for clients to read them, on real sockets: a paused connection's
unsent bytes count against a shared budget, and a connection that stays paused past the write timeout, or that the
budget cannot hold, is disconnected."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import AsyncIterator

from conftest import WAIT_SECONDS, wait_for_async
from kmem_exporter.web.connections import guard
from kmem_exporter.web.limits import ConnectionLimit

ANSWER_BYTES = 16 << 20  # far more than the kernel's socket buffers take: the transport buffers the rest and pauses


class Flood(asyncio.Protocol):
    """A server protocol that answers each connection with ANSWER_BYTES at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b"x" * ANSWER_BYTES)

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


class Flooded:
    """A server whose connections each get ANSWER_BYTES at once, guarded by `limit`, and the clients that connect to
    it reading nothing (a small receive window, so that little is in flight)."""

    def __init__(self, limit: ConnectionLimit, port: int) -> None:
        self.limit = limit
        self._port = port
        self.clients: list[socket.socket] = []

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.clients.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", self._port))
        sock.setblocking(False)
        return sock


@contextlib.asynccontextmanager
async def flooded(limit: ConnectionLimit) -> AsyncIterator[Flooded]:
    server = await asyncio.get_running_loop().create_server(lambda: guard(limit, Flood()), "127.0.0.1", 0)
    flood = Flooded(limit, server.sockets[0].getsockname()[1])
    try:
        yield flood
    finally:
        for sock in flood.clients:
            sock.close()
        server.close()
        await server.wait_closed()


async def read_until_closed(sock: socket.socket, timeout: float = WAIT_SECONDS) -> int:
    """Bytes read until the server closes the connection (cleanly or with a reset)."""
    loop = asyncio.get_running_loop()
    total = 0
    try:
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), timeout):
            total += len(chunk)
    except ConnectionResetError:
        pass
    return total


async def read_answer(sock: socket.socket) -> int:
    """Bytes read until the whole answer has come; fails if the server closes the connection before."""
    loop = asyncio.get_running_loop()
    total = 0
    while total < ANSWER_BYTES:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), WAIT_SECONDS)
        assert chunk, "closed before the whole answer"
        total += len(chunk)
    return total


def test_a_paused_connection_counts_its_unsent_bytes_until_its_client_reads() -> None:
    async def scenario() -> None:
        async with flooded(ConnectionLimit(16, 60, write_timeout=60)) as flood:
            sock = flood.connect()
            await wait_for_async("the answer to wait in the budget", lambda: flood.limit.unsent_bytes > 0)
            assert 0 < flood.limit.unsent_bytes <= ANSWER_BYTES
            assert await read_answer(sock) == ANSWER_BYTES  # the whole answer, once read
            await wait_for_async("the budget to be given back", lambda: flood.limit.unsent_bytes == 0)

    asyncio.run(scenario())


def test_a_connection_paused_past_the_write_timeout_is_disconnected() -> None:
    async def scenario() -> None:
        async with flooded(ConnectionLimit(16, 60, write_timeout=0.5)) as flood:
            sock = flood.connect()
            await wait_for_async("the answer to wait in the budget", lambda: flood.limit.unsent_bytes > 0)
            # Reading nothing: past the write timeout the connection is disconnected and its bytes leave the budget.
            await wait_for_async("the paused connection to be disconnected", lambda: flood.limit.unsent_bytes == 0)
            assert await read_until_closed(sock) < ANSWER_BYTES  # cut short

    asyncio.run(scenario())


def test_a_paused_connection_beyond_the_budget_is_disconnected_and_others_keep_theirs() -> None:
    async def scenario() -> None:
        async with flooded(ConnectionLimit(16, 60, write_timeout=60, unsent_max_bytes=ANSWER_BYTES)) as flood:
            first = flood.connect()
            # most of the first answer waits in the budget
            await wait_for_async("the first answer to wait in the budget",
                                 lambda: flood.limit.unsent_bytes > ANSWER_BYTES // 2)
            held = flood.limit.unsent_bytes
            second = flood.connect()  # its answer cannot fit beside the first one's
            assert await read_until_closed(second) < ANSWER_BYTES
            assert flood.limit.unsent_bytes == held  # the first connection keeps its place
            assert await read_answer(first) == ANSWER_BYTES

    asyncio.run(scenario())
