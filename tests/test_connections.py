"""The budget of answers that wait for clients to read them, on real sockets: an answer's size is reserved before it
is handed over and its connection's unsent bytes count until its client reads them; a connection that reads nothing
past the write timeout is disconnected; when the budget is full, a new answer waits while connections that do not
read are disconnected for it, and a connection that reads keeps its place."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import AsyncIterator

from conftest import WAIT_SECONDS, wait_for_async
from kmem_exporter.web.answers import AnswerBudget
from kmem_exporter.web.connections import guard
from kmem_exporter.web.limits import ConnectionLimit
from kmem_exporter.web.listener import Listener, bind

ANSWER_BYTES = 16 << 20  # far more than the kernel's socket buffers take: the transport buffers the rest and pauses


class Flood(asyncio.Protocol):
    """A server protocol that answers each connection with ANSWER_BYTES once the budget has room for them, as the
    server's /metrics handler does (`refused` counts the answers the budget had no room for)."""

    refused = 0

    def __init__(self, limit: ConnectionLimit) -> None:
        self._limit = limit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        asyncio.ensure_future(self._answer(transport))

    async def _answer(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        connection = self._limit.connection_of(transport)
        assert connection is not None
        if not await self._limit.answers.room(connection, ANSWER_BYTES):
            Flood.refused += 1
            transport.close()
            return
        transport.write(b"x" * ANSWER_BYTES)
        self._limit.answers.settle(connection)

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

    def connect(self, receive_buffer: int = 4096) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.clients.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.connect(("127.0.0.1", self._port))
        sock.setblocking(False)
        return sock


@contextlib.asynccontextmanager
async def flooded(limit: ConnectionLimit) -> AsyncIterator[Flooded]:
    server = Listener(await bind("127.0.0.1", 0, 128), lambda: guard(limit, Flood(limit)), 128, limit)
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


def budget(max_bytes: int = 256 << 20, write_timeout: float = 60, wait: float = 30) -> ConnectionLimit:
    return ConnectionLimit(16, 60, answers=AnswerBudget(max_bytes, wait=wait, write_timeout=write_timeout))


def test_an_answer_counts_its_unsent_bytes_until_its_client_reads() -> None:
    async def scenario() -> None:
        async with flooded(budget()) as flood:
            sock = flood.connect()
            await wait_for_async("the answer to be held in the budget", lambda: flood.limit.answers.held > 0)
            assert 0 < flood.limit.answers.held <= ANSWER_BYTES
            assert await read_answer(sock) == ANSWER_BYTES  # the whole answer, once read
            await wait_for_async("the budget to be given back", lambda: flood.limit.answers.held == 0)
            assert flood.limit.answers.held == 0

    asyncio.run(scenario())


def test_a_connection_that_reads_nothing_past_the_write_timeout_is_disconnected() -> None:
    async def scenario() -> None:
        async with flooded(budget(write_timeout=0.5)) as flood:
            sock = flood.connect()
            await wait_for_async("the answer to be held in the budget", lambda: flood.limit.answers.held > 0)
            assert flood.limit.answers.held > 0
            # reading nothing meanwhile
            await wait_for_async("the budget to be given back", lambda: flood.limit.answers.held == 0)
            assert flood.limit.answers.held == 0
            assert await read_until_closed(sock) < ANSWER_BYTES  # cut short

    asyncio.run(scenario())


def test_when_the_budget_is_full_a_connection_that_does_not_read_makes_room_for_a_new_answer() -> None:
    async def scenario() -> None:
        async with flooded(budget(max_bytes=ANSWER_BYTES)) as flood:
            stalled = flood.connect()  # never reads
            await wait_for_async("most of the first answer to be held",
                                 lambda: flood.limit.answers.held > ANSWER_BYTES // 2)
            assert flood.limit.answers.held > ANSWER_BYTES // 2
            reader = flood.connect()  # waits for room, then gets its answer whole
            assert await read_answer(reader) == ANSWER_BYTES
            assert await read_until_closed(stalled) < ANSWER_BYTES  # the one that did not read was disconnected

    asyncio.run(scenario())


def test_a_connection_that_reads_keeps_its_place_and_the_new_answer_waits_for_it() -> None:
    async def scenario() -> None:
        async with flooded(budget(max_bytes=ANSWER_BYTES)) as flood:
            first = flood.connect(64 << 10)
            await wait_for_async("most of the first answer to be held",
                                 lambda: flood.limit.answers.held > ANSWER_BYTES // 2)
            second = flood.connect()  # no room while the first holds its answer
            loop = asyncio.get_running_loop()
            total = 0
            while total < ANSWER_BYTES:  # the first reads slowly (about 3 MB/s), but reads: it keeps its place
                chunk = await asyncio.wait_for(loop.sock_recv(first, 64 << 10), 30)
                assert chunk, "the reading connection was disconnected"
                total += len(chunk)
                await asyncio.sleep(0.02)
            assert await read_answer(second) == ANSWER_BYTES  # then the second gets its answer

    asyncio.run(scenario())
