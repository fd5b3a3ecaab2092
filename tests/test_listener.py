"""Connections counted as their sockets are accepted (web/listener.py), on real sockets: a connection still being
connected to its protocol makes room for a newer one like any idle connection, its socket is closed as soon as the
event loop hands it over, and until then it counts as closing, so the listener accepts that many fewer."""

from __future__ import annotations

import asyncio
import functools
import socket

from conftest import WAIT_SECONDS, wait_for_async
from hostile import accepted_sockets
from kmem_exporter.web.connections import GuardedConnection, guard
from kmem_exporter.web.limits import ConnectionLimit
from kmem_exporter.web.listener import Listener, bind


class Quiet(asyncio.Protocol):
    """A server protocol that says nothing; `made` once it has its transport."""

    def __init__(self) -> None:
        self.made = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True


def identity(connection: GuardedConnection) -> GuardedConnection:
    return connection


def accepted_pair() -> tuple[socket.socket, socket.socket]:
    """A connected (server side, client side) pair of TCP sockets, the server side non-blocking as accepted."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        client = socket.create_connection(listening.getsockname())
        server, _ = listening.accept()
    server.setblocking(False)
    return server, client


def closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(WAIT_SECONDS)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_connection_still_being_connected_makes_room_and_is_closed_as_it_is_made() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        limit: ConnectionLimit[GuardedConnection] = ConnectionLimit(2, 60)
        protocols = [Quiet() for _ in range(3)]
        connections = [guard(limit, protocol) for protocol in protocols]
        pairs = [accepted_pair() for _ in range(3)]
        pending = []
        for connection, (server, _) in zip(connections[:2], pairs):
            assert connection.admit(server)
            sock = connection.take_socket()  # handed to the event loop, its protocol not yet connected
            assert sock is not None
            protocol = functools.partial(identity, connection)
            pending.append(loop.create_task(loop.connect_accepted_socket(protocol, sock)))
        assert limit.open == 2 and limit.closing == 0
        assert connections[2].admit(pairs[2][0])  # at the limit: the oldest one being connected makes room
        assert limit.open == 2 and limit.closing == 1
        await asyncio.gather(*pending)  # the event loop hands both over; the displaced one is aborted at once
        await wait_for_async("the displaced connection's socket to be closed", lambda: limit.closing == 0)
        assert protocols[0].made is False and protocols[1].made is True
        assert await loop.run_in_executor(None, closed_by_peer, pairs[0][1])
        for server, client in pairs:
            server.close()
            client.close()

    asyncio.run(scenario())


def test_the_listener_accepts_no_more_than_the_backlog_less_the_closing_connections() -> None:
    """With room for 3 sockets a pass, a flood of 20 connections at a limit of 2 never has more than 2 + 3 accepted
    sockets open at once, counted before every pass of the event loop."""
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        limit: ConnectionLimit[GuardedConnection] = ConnectionLimit(2, 60)
        listening = await bind("127.0.0.1", 0, 64)
        listener = Listener(listening, lambda: guard(limit, Quiet()), 3, limit)
        port = listener.sockets[0].getsockname()[1]
        peak = 0
        stop = False

        async def watch() -> None:
            nonlocal peak
            while not stop:
                peak = max(peak, accepted_sockets(port))
                await asyncio.sleep(0)

        watcher = loop.create_task(watch())
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
        await wait_for_async("the flood to be accepted", lambda: limit.accepted == 20)
        await wait_for_async("the displaced connections to be closed", lambda: limit.closing == 0)
        stop = True
        await watcher
        assert limit.open == 2 and limit.evicted == 18
        assert peak <= 2 + 3, f"{peak} accepted sockets open at once"
        for client in clients:
            client.close()
        listener.close()

    asyncio.run(scenario())
